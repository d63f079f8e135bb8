"""What a node and its clients say to each other: routes, frames, the probe, node keys.

Both ends import the same definitions, so a client and a node cannot disagree about a
field name or a size limit.
"""
