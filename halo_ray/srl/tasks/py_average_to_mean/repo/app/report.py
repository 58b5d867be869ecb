from stats import average, mean


def summary(scores):
    return {"mean": average(scores), "n": len(scores)}


def spread(scores):
    centre = average(scores)
    return max(abs(s - centre) for s in scores)
