import java.util.List;

public class Basket {
    public static boolean empty(List<String> items) {
        return items.size() == 0;
    }

    public static String first(List<String> items) {
        if (items.size() == 0) {
            return "none";
        }
        return items.get(0);
    }
}
