item_names = _module("inventory").item_names
report = _module("inventory").report
assert item_names({"b": 1, "a": 2}) == ["a", "b"]
assert report({"pear": 3, "fig": 1}) == "fig=1, pear=3"
assert ".keys()" not in _read("inventory.py")
