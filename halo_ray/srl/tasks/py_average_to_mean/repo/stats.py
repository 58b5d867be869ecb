def mean(xs):
    return sum(xs) / len(xs)


def average(xs):
    """Deprecated: use mean()."""
    raise DeprecationWarning("average() is deprecated, use mean()")


def legacy(name, xs):
    """The old entry points by name, kept (raising) until the last external caller migrates."""
    return {"average": lambda: average(xs)}[name]()
