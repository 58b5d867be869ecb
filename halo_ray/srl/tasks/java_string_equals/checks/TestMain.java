public class TestMain {
    public static void main(String[] args) {
        String quit = new String("quit");
        String help = new String("help");
        check(Commands.isQuit(quit), "quit by value");
        check(!Commands.isQuit(null), "null is not quit");
        check(Commands.code(help, 5) == 1, "help");
        check(Commands.code("x", 0) == 0, "n == 0");
        check(Commands.code("x", 3) == 2, "other");
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            System.err.println("FAIL " + what);
            System.exit(1);
        }
    }
}
