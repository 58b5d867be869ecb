from cache import Sentinel, lookup
assert lookup({}, "k") == "miss"
assert lookup({"k": 5}, "k") == 5
s = Sentinel()
assert lookup({"k": s}, "k") is s
assert "== None" not in _read("cache.py")
