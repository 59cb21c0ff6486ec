SUMMARY = "bmcd: BMC management daemon (chassis power, fans) on D-Bus"
DESCRIPTION = "bmcd drives chassis power through GPIO lines and the fans \
               through hwmon, and serves them on the D-Bus system bus \
               (org.bmcd) to the members of the bmc-admin and bmc-operator \
               groups."

require bmcd.inc

# One recipe per binary (see bmcctl_git.bb).
CARGO_BUILD_FLAGS += "-p bmcd"

# nonstick (the PAM binding) links libpam.so.0.
DEPENDS += "libpam"

# bmcd needs PAM (Session1.Authenticate) and systemd (Type=dbus unit with
# the watchdog, sysusers.d).
REQUIRED_DISTRO_FEATURES = "pam systemd"

inherit features_check systemd useradd

SYSTEMD_SERVICE:${PN} = "bmcd.service"

# The groups of systemd/bmcd.sysusers, also made at rootfs time (sysusers.d
# alone makes them at first boot, and the rootfs post-commands warn).
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system bmc-admin; --system bmc-operator"

# The configuration installed as /etc/bmcd/bmcd.json: the repository's
# default (the simulator). A board's bbappend points this at its own, e.g.
#   BMCD_CONFIG = "${S}/config/examples/ast2600-hwmon-gpio.json"
# or, for a file in the board's layer,
#   FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
#   SRC_URI += "file://bmcd.json"
#   BMCD_CONFIG = "${UNPACKDIR}/bmcd.json"
# (see meta-layer/README.md and meta-layer/examples/).
BMCD_CONFIG ?= "${S}/config/bmcd.json"

# Exactly the entries of scripts/install-set other than bmcctl;
# scripts/check-layer compares the two.
do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${BMCD_TARGET_DIR}/bmcd ${D}${bindir}/bmcd

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/bmcd.service ${D}${systemd_system_unitdir}/bmcd.service
    install -d ${D}${nonarch_libdir}/sysusers.d
    install -m 0644 ${S}/systemd/bmcd.sysusers ${D}${nonarch_libdir}/sysusers.d/bmcd.conf

    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/config/dbus/org.bmcd.conf ${D}${datadir}/dbus-1/system.d/org.bmcd.conf
    install -d ${D}${datadir}/dbus-1/interfaces
    install -m 0644 ${S}/config/dbus/org.bmcd.*.xml ${D}${datadir}/dbus-1/interfaces/

    install -d ${D}${sysconfdir}/pam.d
    install -m 0644 ${S}/config/pam.d/bmcd ${D}${sysconfdir}/pam.d/bmcd

    install -d ${D}${sysconfdir}/bmcd
    install -m 0644 ${BMCD_CONFIG} ${D}${sysconfdir}/bmcd/bmcd.json
    # Public keys that firmware images are verified with: empty here; an
    # image adds its *.pub (meta-layer/README.md, "Signing keys").
    install -d -m 0755 ${D}${sysconfdir}/bmcd/keys
}

FILES:${PN} += "${datadir}/dbus-1 \
                ${nonarch_libdir}/sysusers.d \
                ${systemd_system_unitdir}/bmcd.service \
"

CONFFILES:${PN} = "${sysconfdir}/bmcd/bmcd.json \
                   ${sysconfdir}/pam.d/bmcd \
"
