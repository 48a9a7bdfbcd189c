"""Running work: the scheduler that sends each uncached item once, the backend protocol and
its registry, and progress bars.
"""
