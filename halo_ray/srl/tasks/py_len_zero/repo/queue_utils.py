def is_idle(jobs):
    return len(jobs) == 0


def next_job(jobs):
    if len(jobs) == 0:
        return None
    return jobs[0]
