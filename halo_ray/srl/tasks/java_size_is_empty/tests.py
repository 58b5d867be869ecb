assert _java("TestMain")
assert "size() == 0" not in _read("src/Basket.java")
