SUMMARY = "bmcd and bmcctl"
DESCRIPTION = "The BMC management daemon with its D-Bus policy, PAM \
               service, systemd unit and default configuration, and its \
               command-line client."
LICENSE = "MIT"

# As bmcd: without these distro features bmcd is skipped, and so is this.
REQUIRED_DISTRO_FEATURES = "pam systemd"

inherit packagegroup features_check

RDEPENDS:${PN} = "bmcctl \
                  bmcd \
"
