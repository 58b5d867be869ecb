public class Commands {
    public static boolean isQuit(String cmd) {
        return cmd == "quit";
    }

    public static int code(String cmd, int n) {
        if (cmd == "help") {
            return 1;
        }
        return n == 0 ? 0 : 2;
    }
}
