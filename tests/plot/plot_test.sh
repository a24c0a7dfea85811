#!/bin/sh
# core.plot: usage plot_test.sh test_plot OUTDIR [PYTHON]
# test_plot writes and checks the SVG files; then each must parse as XML, with xmllint or
# Python's xml.dom.minidom, whichever exists (the check is skipped, visibly, when neither does).
set -e
exe=$1 dir=$2 py=${3:-/usr/bin/python3}
rm -rf "$dir"
mkdir -p "$dir"
"$exe" "$dir"
if command -v xmllint >/dev/null 2>&1; then
    for f in "$dir"/*.svg; do xmllint --noout "$f"; done
    echo "core.plot: $(ls "$dir"/*.svg | wc -l) files well-formed (xmllint)"
elif "$py" -c "import xml.dom.minidom" >/dev/null 2>&1; then
    for f in "$dir"/*.svg; do "$py" -c "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])" "$f"; done
    echo "core.plot: $(ls "$dir"/*.svg | wc -l) files well-formed (xml.dom.minidom)"
else
    echo "core.plot: SKIPPED the XML well-formedness check: neither xmllint nor $py with xml.dom"
fi
