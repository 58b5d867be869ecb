# Programs in the style of competitive programming and C, kept as Python strings so the tokenizer
# also sees braces, semicolons and stdin/stdout idioms. Data, not code that halo-ray runs.

C_PROGRAMS = [
    r'''#include <stdio.h>

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long sum = 0;
    for (int i = 1; i <= n; i++) {
        sum += i;
    }
    printf("%lld\n", sum);
    return 0;
}
''',
    r'''#include <bits/stdc++.h>
using namespace std;

int main() {
    ios::sync_with_stdio(false);
    cin.tie(nullptr);
    int n;
    cin >> n;
    vector<int> a(n);
    for (auto &x : a) cin >> x;
    sort(a.begin(), a.end());
    cout << a[n / 2] << "\n";
    return 0;
}
''',
    r'''#include <stdio.h>
#include <string.h>

int main(void) {
    char s[256];
    if (!fgets(s, sizeof s, stdin)) return 1;
    size_t len = strlen(s);
    for (size_t i = 0; i < len / 2; i++) {
        char t = s[i];
        s[i] = s[len - 1 - i];
        s[len - 1 - i] = t;
    }
    puts(s);
    return 0;
}
''',
]

PY_STDIN_PROGRAMS = [
    '''import sys

def main():
    data = sys.stdin.read().split()
    n = int(data[0])
    xs = list(map(int, data[1:1 + n]))
    print(sum(xs), max(xs), min(xs))

main()
''',
    '''n = int(input())
for i in range(1, n + 1):
    if i % 15 == 0:
        print("FizzBuzz")
    elif i % 3 == 0:
        print("Fizz")
    elif i % 5 == 0:
        print("Buzz")
    else:
        print(i)
''',
]
