def mean(xs):
    return sum(xs) / len(xs)


def average(xs):
    """Deprecated: use mean()."""
    raise DeprecationWarning("average() is deprecated, use mean()")
