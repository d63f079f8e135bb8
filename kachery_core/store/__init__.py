"""Storage directories on this machine: the interface, the on-disk layout and its checks.

The node and the embedded backend use the same `LocalStorage`, so a directory written by
one is read by the other (and by the original kachery tools).
"""
