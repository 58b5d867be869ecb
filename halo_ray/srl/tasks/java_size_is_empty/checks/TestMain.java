import java.util.List;

public class TestMain {
    public static void main(String[] args) {
        check(Basket.empty(List.of()), "empty list");
        check(!Basket.empty(List.of("x")), "non-empty list");
        check(Basket.first(List.of()).equals("none"), "first of empty");
        check(Basket.first(List.of("a", "b")).equals("a"), "first");
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            System.err.println("FAIL " + what);
            System.exit(1);
        }
    }
}
