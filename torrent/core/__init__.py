"""The bottom layer: the error hierarchy, the settings tree, units, rate
meters, and the bitfield and hashing twins with the selector that picks the
compiled ``_speedups`` module or its pure-Python twin."""
