# Example: a board layer's bbappend that installs an AST2600 board's
# configuration (power through GPIO lines, fans and sensors through hwmon) as
# /etc/bmcd/bmcd.json instead of the repository's default (the simulator).
# Copy it into your board layer as recipes-bmc/bmcd/bmcd_%.bbappend. It is
# not in this layer's BBFILES, so it changes nothing by itself.
#
# From the source tree (config/examples/ of this repository):
BMCD_CONFIG = "${S}/config/examples/ast2600-hwmon-gpio.json"

# Or from the board layer itself: put the file in files/bmcd.json beside this
# bbappend and use, instead of the line above:
#   FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
#   SRC_URI += "file://bmcd.json"
#   BMCD_CONFIG = "${UNPACKDIR}/bmcd.json"
