import math


def norm(a, b):
    return math.sqrt(math.pow(a, 2) + math.pow(b, 2))


def shifted_square(a, b):
    return math.pow(a + b, 2)


def cube(a):
    return math.pow(a, 3)
