spread = _module("app.report").spread
summary = _module("app.report").summary
assert summary([1, 2, 3]) == {"mean": 2.0, "n": 3}
assert spread([1, 2, 6]) == 3.0
assert "average(" not in _read("app/report.py")
assert "lambda: average(xs)" in _read("stats.py")
