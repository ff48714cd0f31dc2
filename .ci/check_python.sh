#!/bin/sh
# Set-up's first step: stop in one line when the interpreter is not the Python the lock is for.
# Usage: check_python.sh VERSION PYTHON [WHAT TO DO]   e.g. check_python.sh 3.11 /usr/bin/python3
wanted=$1
python=$2
fix=${3:-"set PYTHON=/path/to/python$wanted"}
found=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null | head -n 1)
if [ "$found" != "$wanted" ]; then
  echo "spineage needs Python $wanted, found ${found:-no Python} (${python:-no python3 on PATH}); $fix" >&2
  exit 1
fi
