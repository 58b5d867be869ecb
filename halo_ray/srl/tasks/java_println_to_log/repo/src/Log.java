import java.util.ArrayList;
import java.util.List;

public class Log {
    public static final List<String> MESSAGES = new ArrayList<>();

    public static void info(String message) {
        MESSAGES.add(message);
    }
}
