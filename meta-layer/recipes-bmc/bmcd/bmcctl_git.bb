SUMMARY = "bmcctl: command-line client of bmcd"
DESCRIPTION = "bmcctl talks to bmcd over the D-Bus system bus: chassis \
               power, fans, sessions, logs, dumps and firmware updates, in \
               text or --json."

require bmcd.inc

# One recipe per binary: cargo builds only this package, so bmcctl does not
# get the daemon's tokio features (no feature unification).
CARGO_BUILD_FLAGS += "-p bmcctl"

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${BMCD_TARGET_DIR}/bmcctl ${D}${bindir}/bmcctl
}
