#!/usr/bin/env python3
"""Writes the C example between the README's example markers to a file, so
the build compiles exactly what the README shows.

Usage: extract-example.py README.md OUT.c"""
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"<!-- example:begin -->\s*```c\n(.*?)```\s*<!-- example:end -->", text, re.S)
if not m:
    sys.exit("README.md: no ```c block between <!-- example:begin --> and <!-- example:end -->")
open(sys.argv[2], "w", encoding="utf-8").write(m.group(1))
