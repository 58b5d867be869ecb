public class TestMain {
    public static void main(String[] args) {
        Greeter.greet("ada");
        Greeter.leave("ada");
        if (!Log.MESSAGES.equals(java.util.List.of("hello ada", "bye ada"))) {
            System.err.println("FAIL " + Log.MESSAGES);
            System.exit(1);
        }
    }
}
