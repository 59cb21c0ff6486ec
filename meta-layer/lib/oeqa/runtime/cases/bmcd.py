#
# SPDX-License-Identifier: Apache-2.0
#
# oeqa runtime tests of bmcd on a booted image (testimage). An image enables
# them with
#   IMAGE_CLASSES += "testimage"
#   TEST_SUITES = "ping ssh systemd bmcd"
# and runs them with `bitbake -c testimage IMAGE` (meta-layer/README.md).

import json
import re
import time

from oeqa.core.decorator.data import skipIfNotFeature
from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage

# The exposure level `systemd-analyze security` gives bmcd.service must stay
# under this (0 is the most confined, 10 the least).
MAX_EXPOSURE = 2.5
# How long bmcd may take to reach "active" after boot (Type=dbus: active
# once it owns org.bmcd).
ACTIVE_TIMEOUT_S = 120


class BmcdTest(OERuntimeTestCase):

    def run_ok(self, cmd):
        status, output = self.target.run(cmd)
        self.assertEqual(status, 0, msg='%s failed (%d):\n%s' % (cmd, status, output))
        return output

    def unprivileged(self, cmd):
        """cmd as nobody (uid 65534, in neither bmc-admin nor bmc-operator)."""
        status, _ = self.target.run('command -v setpriv')
        if status == 0:
            return 'setpriv --reuid=65534 --regid=65534 --clear-groups -- %s' % cmd
        return "su -s /bin/sh nobody -c '%s'" % cmd

    @skipIfNotFeature('systemd', 'bmcd needs systemd in DISTRO_FEATURES')
    @skipIfNotFeature('pam', 'bmcd needs pam in DISTRO_FEATURES')
    @OEHasPackage(['bmcd'])
    def test_bmcd_active(self):
        deadline = time.time() + ACTIVE_TIMEOUT_S
        while True:
            status, output = self.target.run('systemctl is-active bmcd.service')
            if status == 0 and output.strip() == 'active':
                break
            if time.time() >= deadline:
                _, journal = self.target.run('systemctl status --no-pager --full bmcd.service; '
                                             'journalctl --no-pager -b -u bmcd.service | tail -n 40')
                self.fail('bmcd.service is not active after %d s (%s):\n%s'
                          % (ACTIVE_TIMEOUT_S, output.strip(), journal))
            time.sleep(2)
        # The groups of sysusers.d/bmcd.conf exist (useradd at rootfs time).
        self.run_ok('getent group bmc-admin')
        self.run_ok('getent group bmc-operator')

    @OEHasPackage(['bmcctl'])
    @OETestDepends(['bmcd.BmcdTest.test_bmcd_active'])
    def test_bmcctl_chassis_status(self):
        output = self.run_ok('bmcctl chassis status')
        self.assertTrue(output.strip(), msg='bmcctl chassis status printed nothing')

    @OEHasPackage(['bmcctl'])
    @OETestDepends(['bmcd.BmcdTest.test_bmcd_active'])
    def test_bmcctl_fan_list_json(self):
        output = self.run_ok('bmcctl --json fan list')
        try:
            doc = json.loads(output)
        except ValueError as e:
            self.fail('bmcctl --json fan list is not JSON (%s):\n%s' % (e, output))
        self.assertIsInstance(doc, dict, msg=output)
        self.assertIn('Zone', doc, msg=output)
        fans = doc.get('Fans')
        self.assertIsInstance(fans, list, msg=output)
        self.assertTrue(fans, msg='no fans in %s' % output)
        for fan in fans:
            self.assertTrue(fan.get('Name'), msg='a fan without a name in %s' % output)

    @OETestDepends(['bmcd.BmcdTest.test_bmcd_active'])
    def test_dbus_policy_refuses_unprivileged(self):
        # A mutating call (Chassis1.SetIdentify) from a user in neither group:
        # dbus-daemon refuses it by the shipped policy (org.bmcd.conf) before
        # bmcd sees it ("Rejected send message", AccessDenied).
        call = ('busctl --system call org.bmcd /org/bmcd/chassis0 org.bmcd.Chassis1 '
                'SetIdentify bua{sv} false 0 0')
        status, output = self.target.run(self.unprivileged(call))
        self.assertNotEqual(status, 0, msg='an unprivileged SetIdentify was accepted:\n%s' % output)
        self.assertTrue('Rejected send message' in output or 'AccessDenied' in output
                        or 'Access denied' in output,
                        msg='refused, but not by the bus policy:\n%s' % output)
        # The same user may still read properties (the policy allows Get).
        self.run_ok(self.unprivileged('busctl --system get-property org.bmcd /org/bmcd/chassis0 '
                                      'org.bmcd.Chassis1 PowerState'))

    @OEHasPackage(['systemd-analyze'])
    @OETestDepends(['bmcd.BmcdTest.test_bmcd_active'])
    def test_systemd_analyze_security(self):
        output = self.run_ok('systemd-analyze security --no-pager bmcd.service')
        m = re.search(r'Overall exposure level for bmcd\.service:\s*([0-9]+(?:\.[0-9]+)?)', output)
        self.assertIsNotNone(m, msg='no exposure level in:\n%s' % output)
        exposure = float(m.group(1))
        self.assertLess(exposure, MAX_EXPOSURE,
                        msg='bmcd.service exposure %.1f, want < %.1f:\n%s'
                        % (exposure, MAX_EXPOSURE, output))
