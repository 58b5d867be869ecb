# A small corpus of everyday Python used to train the embedded tiny model's tokenizer.
# It is data, not code that halo-ray runs.


def add(a, b):
    """Return the sum of a and b."""
    return a + b


def subtract(a, b):
    """Return a minus b."""
    return a - b


def is_even(n):
    """Return True if n is even."""
    return n % 2 == 0


def factorial(n):
    """Return n! for a non-negative integer n."""
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result


def fibonacci(n):
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def reverse_string(s):
    """Return s reversed."""
    return s[::-1]


def count_vowels(text):
    """Count the vowels in text."""
    return sum(1 for ch in text.lower() if ch in "aeiou")


def max_of_list(xs):
    """Return the largest element of xs."""
    best = xs[0]
    for x in xs[1:]:
        if x > best:
            best = x
    return best


def unique(xs):
    """Return the elements of xs without duplicates, keeping order."""
    seen = set()
    out = []
    for x in xs:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def flatten(nested):
    """Flatten a list of lists."""
    return [item for sub in nested for item in sub]


def word_count(sentence):
    """Return a dict mapping each word to its count."""
    counts = {}
    for word in sentence.split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def is_palindrome(s):
    """Return True if s reads the same forwards and backwards."""
    cleaned = "".join(ch.lower() for ch in s if ch.isalnum())
    return cleaned == cleaned[::-1]


def gcd(a, b):
    """Greatest common divisor of a and b."""
    while b:
        a, b = b, a % b
    return a


def binary_search(xs, target):
    """Return the index of target in sorted xs, or -1."""
    lo, hi = 0, len(xs) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if xs[mid] == target:
            return mid
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


def chunks(xs, size):
    """Split xs into lists of at most size elements."""
    return [xs[i:i + size] for i in range(0, len(xs), size)]


def capitalize_words(text):
    """Capitalize the first letter of every word."""
    return " ".join(word.capitalize() for word in text.split(" "))


def running_sum(values):
    """Return the prefix sums of values."""
    total = 0
    out = []
    for v in values:
        total += v
        out.append(total)
    return out


def clamp(x, low, high):
    """Clamp x into [low, high]."""
    return max(low, min(x, high))


def merge_dicts(a, b):
    """Return a new dict with the keys of a and b; b wins."""
    merged = dict(a)
    merged.update(b)
    return merged


def transpose(matrix):
    """Transpose a list-of-lists matrix."""
    return [list(row) for row in zip(*matrix)]


def is_prime(n):
    """Return True if n is prime."""
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def digits_sum(n):
    """Sum of the decimal digits of n."""
    return sum(int(d) for d in str(abs(n)))


def rotate(xs, k):
    """Rotate xs left by k places."""
    if not xs:
        return xs
    k %= len(xs)
    return xs[k:] + xs[:k]


def pairwise_diff(xs):
    """Differences between neighbours."""
    return [b - a for a, b in zip(xs, xs[1:])]


class Stack:
    """A last-in first-out stack."""

    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        if not self.items:
            raise IndexError("pop from empty stack")
        return self.items.pop()

    def __len__(self):
        return len(self.items)


def test_add():
    assert add(2, 3) == 5
    assert add(-1, 1) == 0


def test_is_even():
    assert is_even(4)
    assert not is_even(7)


def test_reverse_string():
    assert reverse_string("abc") == "cba"
    assert reverse_string("") == ""


def test_gcd():
    assert gcd(12, 18) == 6
    assert gcd(7, 13) == 1


if __name__ == "__main__":
    print(fibonacci(10), factorial(5), is_prime(97))
    print(word_count("the cat and the hat"))
    print(chunks(list(range(10)), 3))
