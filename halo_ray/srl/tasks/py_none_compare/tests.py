Sentinel = _module("cache").Sentinel
lookup = _module("cache").lookup
assert lookup({}, "k") == "miss"
assert lookup({"k": 5}, "k") == 5
assert lookup({"k": Sentinel()}, "k") != "miss"  # an object equal to everything is not None
assert "== None" not in _read("cache.py")
