cube = _module("geometry").cube
norm = _module("geometry").norm
shifted_square = _module("geometry").shifted_square
assert norm(3, 4) == 5.0
assert shifted_square(1, 2) == 9
assert cube(2) == 8.0
assert "math.pow(a, 3)" in _read("geometry.py")
assert _read("geometry.py").count("math.pow") == 1
