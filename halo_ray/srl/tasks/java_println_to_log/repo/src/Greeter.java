public class Greeter {
    public static void greet(String name) {
        System.out.println("hello " + name);
    }

    public static void leave(String name) {
        System.out.println("bye " + name);
    }
}
