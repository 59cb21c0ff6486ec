//! Fans and temperature sensors through Linux hwmon sysfs files
//! (`Documentation/hwmon/sysfs-interface.rst` in the kernel).
//!
//! Each configured fan or sensor names a hwmon device by the content of its
//! `name` file (e.g. `aspeed_g6_pwm_tach`, `tmp75`) and, when several devices
//! share that name, by a substring of the device's canonical sysfs path
//! (`device`, e.g. `3-0048`). Devices are resolved once, when the backend is
//! opened: `hwmonN` numbers are assigned at boot in probe order and are not
//! stable, so they never appear in the configuration.
//!
//! Attributes used: `fanN_input` (RPM), `fanN_fault` (optional, "1" when the
//! fan is known to be bad), `pwmN` (duty 0–255), `pwmN_enable` (optional:
//! 1 = manual, 2 = automatic), `tempN_input` (millidegrees Celsius).
//! Every write is a single `write(2)` of the whole value, as sysfs requires.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{FanHw, HwError, HwResult, Percent, TempHw};
use crate::config::{HwmonFan, HwmonSensor};

/// One `hwmonN` directory found under the root.
#[derive(Debug)]
struct HwmonDir {
    /// `root/hwmonN`, as listed (usually a symlink into /sys/devices).
    entry: PathBuf,
    /// Where the attribute files live: normally `entry`; `entry/device` for
    /// old drivers that put them there.
    attrs: PathBuf,
    /// The trimmed content of the `name` file.
    name: String,
    /// The canonical path of `entry/device`, or of `entry` when there is no
    /// `device` link; matched against the configured `device` substring.
    device_path: String,
}

/// Read and trim a small text file.
fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

/// List the hwmon devices under `root`.
fn scan(root: &Path) -> HwResult<Vec<HwmonDir>> {
    let rd = fs::read_dir(root).map_err(|source| HwError::Io {
        what: format!("hwmon root {}", root.display()),
        source,
    })?;
    let mut dirs = Vec::new();
    for entry in rd.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if !n.starts_with("hwmon") {
            continue;
        }
        let path = entry.path();
        let dev_link = path.join("device");
        let (attrs, name) = match read_trimmed(&path.join("name")) {
            Ok(name) => (path.clone(), name),
            // Old drivers keep `name` and the attributes in the device.
            Err(_) => match read_trimmed(&dev_link.join("name")) {
                Ok(name) => (dev_link.clone(), name),
                Err(_) => continue,
            },
        };
        let canonical = fs::canonicalize(&dev_link)
            .or_else(|_| fs::canonicalize(&path))
            .unwrap_or_else(|_| path.clone());
        dirs.push(HwmonDir {
            entry: path,
            attrs,
            name,
            device_path: canonical.to_string_lossy().into_owned(),
        });
    }
    dirs.sort_by(|a, b| a.entry.cmp(&b.entry));
    Ok(dirs)
}

/// Find the one hwmon device matching `hwmon` (and `device`, if given) for
/// the configured item `what` (e.g. "fan 'fan0'"). Returns its attribute
/// directory.
fn resolve(
    dirs: &[HwmonDir],
    root: &Path,
    what: &str,
    hwmon: &str,
    device: Option<&str>,
) -> HwResult<PathBuf> {
    let matches: Vec<&HwmonDir> = dirs
        .iter()
        .filter(|d| d.name == hwmon && device.is_none_or(|dev| d.device_path.contains(dev)))
        .collect();
    let looked_for = match device {
        Some(dev) => format!("a hwmon device named '{hwmon}' whose device path contains '{dev}'"),
        None => format!("a hwmon device named '{hwmon}'"),
    };
    match matches.as_slice() {
        [one] => Ok(one.attrs.clone()),
        [] => Err(HwError::NotFound(format!(
            "{what}: found no {} under {}",
            looked_for.trim_start_matches("a "),
            root.display()
        ))),
        several => {
            let list: Vec<String> = several
                .iter()
                .map(|d| format!("{} ({})", d.entry.display(), d.device_path))
                .collect();
            Err(HwError::Invalid(format!(
                "{what}: {looked_for} is ambiguous, {} devices match: {}; \
                 set \"device\" to a substring of the one device path to use",
                several.len(),
                list.join(", ")
            )))
        }
    }
}

/// Fail with `NotFound` unless `path` exists.
fn require(what: &str, path: &Path) -> HwResult<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(HwError::NotFound(format!(
            "{what}: {} does not exist",
            path.display()
        )))
    }
}

/// Read a sysfs attribute and parse it as `T`; the error names the path.
fn read_value<T: std::str::FromStr>(path: &Path, unit: &str) -> HwResult<T> {
    let text = fs::read_to_string(path).map_err(|source| HwError::Io {
        what: path.display().to_string(),
        source,
    })?;
    let t = text.trim();
    t.parse().map_err(|_| {
        HwError::Invalid(format!(
            "{}: cannot read '{}' as {unit}",
            path.display(),
            t.escape_default()
        ))
    })
}

/// Write `value` to a sysfs attribute in a single `write(2)`; a short write
/// is an error. The file must exist (it is never created).
fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    let n = f.write(value.as_bytes())?;
    if n == value.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", value.len()),
        ))
    }
}

fn write_value(path: &Path, value: &str) -> HwResult<()> {
    write_attr(path, value).map_err(|source| HwError::Io {
        what: format!("writing '{value}' to {}", path.display()),
        source,
    })
}

/// One fan's files.
#[derive(Debug)]
struct FanFiles {
    name: String,
    input: PathBuf,
    fault: PathBuf,
    pwm: PathBuf,
    enable: PathBuf,
}

/// The fans of one cooling zone, as hwmon tach inputs and PWM outputs.
///
/// Several fans may share one PWM output (two rotors on one header); each
/// has its own tach input.
#[derive(Debug)]
pub struct HwmonFans {
    fans: Vec<FanFiles>,
}

impl HwmonFans {
    /// Resolve every fan of `fans` under the hwmon class directory `root`
    /// (normally `/sys/class/hwmon`).
    ///
    /// Errors: `Io` if `root` cannot be listed; `NotFound` if no hwmon device
    /// matches a fan's `hwmon`/`device`, or its `fanN_input` or `pwmN` file
    /// does not exist; `Invalid` if several devices match (the message asks
    /// for `device` to be set). Nothing is written at open: the PWM channels
    /// are put under software control by the first [`FanHw::write_pwm`].
    pub fn open(root: &Path, fans: &[HwmonFan]) -> HwResult<HwmonFans> {
        let dirs = scan(root)?;
        let mut out = Vec::with_capacity(fans.len());
        for f in fans {
            let what = format!("fan '{}'", f.name);
            let dir = resolve(&dirs, root, &what, &f.hwmon, f.device.as_deref())?;
            let files = FanFiles {
                name: f.name.clone(),
                input: dir.join(format!("fan{}_input", f.tach)),
                fault: dir.join(format!("fan{}_fault", f.tach)),
                pwm: dir.join(format!("pwm{}", f.pwm)),
                enable: dir.join(format!("pwm{}_enable", f.pwm)),
            };
            require(&what, &files.input)?;
            require(&what, &files.pwm)?;
            out.push(files);
        }
        Ok(HwmonFans { fans: out })
    }

    fn fan(&self, fan: usize) -> HwResult<&FanFiles> {
        self.fans
            .get(fan)
            .ok_or_else(|| HwError::NotFound(format!("no fan with index {fan}")))
    }

    /// Put the PWM channel under manual control if it has a `pwmN_enable`
    /// file that says anything else (at first use, or because another
    /// program changed it since).
    fn ensure_manual(f: &FanFiles) -> HwResult<()> {
        match read_trimmed(&f.enable) {
            Ok(mode) if mode == "1" => Ok(()),
            Ok(_) => write_value(&f.enable, "1"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(HwError::Io {
                what: f.enable.display().to_string(),
                source,
            }),
        }
    }
}

/// Errors name the sysfs file involved. `read_rpm` fails with `Io` when the
/// driver refuses the read (some report a stalled or absent fan that way)
/// and with `Invalid` when the content is not a number. Every method fails
/// with `NotFound` for an index out of range.
impl FanHw for HwmonFans {
    fn names(&self) -> Vec<String> {
        self.fans.iter().map(|f| f.name.clone()).collect()
    }

    fn read_rpm(&self, fan: usize) -> HwResult<u32> {
        read_value(&self.fan(fan)?.input, "RPM")
    }

    /// Writes `pwmN_enable` = 1 first when that file exists and says
    /// otherwise, then the level as a duty cycle (0–255) to `pwmN`.
    fn write_pwm(&self, fan: usize, level: Percent) -> HwResult<()> {
        let f = self.fan(fan)?;
        Self::ensure_manual(f)?;
        write_value(&f.pwm, &level.to_duty().to_string())
    }

    /// A fan is present when its `fanN_input` can be read and its
    /// `fanN_fault`, if the driver has one, is not "1".
    fn present(&self, fan: usize) -> HwResult<bool> {
        let f = self.fan(fan)?;
        if fs::read_to_string(&f.input).is_err() {
            return Ok(false);
        }
        Ok(read_trimmed(&f.fault).map_or(true, |v| v != "1"))
    }

    /// Writes 255 to every `pwmN`, then 2 (automatic) to every
    /// `pwmN_enable` that exists; a driver without an automatic mode
    /// refuses that with EINVAL, which is ignored (the fans then stay at
    /// full speed). Every channel is attempted; the first error is
    /// returned.
    fn release(&self) -> HwResult<()> {
        let mut first_err = None;
        let mut done: Vec<&Path> = Vec::new();
        for f in &self.fans {
            if done.contains(&f.pwm.as_path()) {
                continue;
            }
            done.push(&f.pwm);
            if let Err(e) = write_value(&f.pwm, "255") {
                first_err.get_or_insert(e);
            }
        }
        let mut done: Vec<&Path> = Vec::new();
        for f in &self.fans {
            if done.contains(&f.enable.as_path()) || !f.enable.exists() {
                continue;
            }
            done.push(&f.enable);
            match write_attr(&f.enable, "2") {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(EINVAL) => {}
                Err(source) => {
                    first_err.get_or_insert(HwError::Io {
                        what: format!("writing '2' to {}", f.enable.display()),
                        source,
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// EINVAL on Linux (all architectures).
const EINVAL: i32 = 22;

/// One sensor's files.
#[derive(Debug)]
struct SensorFiles {
    name: String,
    input: PathBuf,
}

/// Temperature sensors as hwmon `tempN_input` files.
#[derive(Debug)]
pub struct HwmonTemps {
    sensors: Vec<SensorFiles>,
}

impl HwmonTemps {
    /// Resolve every sensor of `sensors` under the hwmon class directory
    /// `root` (normally `/sys/class/hwmon`).
    ///
    /// Errors: `Io` if `root` cannot be listed; `NotFound` if no hwmon device
    /// matches a sensor's `hwmon`/`device` or its `tempN_input` does not
    /// exist; `Invalid` if several devices match (the message asks for
    /// `device` to be set).
    pub fn open(root: &Path, sensors: &[HwmonSensor]) -> HwResult<HwmonTemps> {
        let dirs = scan(root)?;
        let mut out = Vec::with_capacity(sensors.len());
        for s in sensors {
            let what = format!("sensor '{}'", s.name);
            let dir = resolve(&dirs, root, &what, &s.hwmon, s.device.as_deref())?;
            let input = dir.join(format!("temp{}_input", s.input));
            require(&what, &input)?;
            out.push(SensorFiles {
                name: s.name.clone(),
                input,
            });
        }
        Ok(HwmonTemps { sensors: out })
    }
}

/// `read_celsius` reads `tempN_input` (millidegrees) and fails with `Io`
/// when the driver refuses the read (e.g. the sensor does not answer on its
/// bus), with `Invalid` when the content is not an integer, and with
/// `NotFound` for an index out of range.
impl TempHw for HwmonTemps {
    fn names(&self) -> Vec<String> {
        self.sensors.iter().map(|s| s.name.clone()).collect()
    }

    fn read_celsius(&self, sensor: usize) -> HwResult<f64> {
        let s = self
            .sensors
            .get(sensor)
            .ok_or_else(|| HwError::NotFound(format!("no sensor with index {sensor}")))?;
        let milli: i64 = read_value(&s.input, "millidegrees Celsius")?;
        Ok(milli as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn pct(n: u8) -> Percent {
        Percent::new(n).unwrap()
    }

    /// A temporary directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "bmcd-hwmon-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A fake sysfs: `devices/<dev>/hwmon/hwmonN` with a `device` link
    /// back to `devices/<dev>`, listed as `class/hwmon/hwmonN`.
    struct Tree {
        tmp: TempDir,
    }

    impl Tree {
        fn root(&self) -> PathBuf {
            self.tmp.0.join("class/hwmon")
        }

        fn hwmon(&self, n: u32) -> PathBuf {
            self.root().join(format!("hwmon{n}"))
        }

        fn add(&self, n: u32, dev: &str, name: &str, files: &[(&str, &str)]) {
            let devdir = self.tmp.0.join("devices").join(dev);
            let dir = devdir.join(format!("hwmon/hwmon{n}"));
            fs::create_dir_all(&dir).unwrap();
            symlink(&devdir, dir.join("device")).unwrap();
            fs::write(dir.join("name"), format!("{name}\n")).unwrap();
            for (f, v) in files {
                fs::write(dir.join(f), v).unwrap();
            }
            fs::create_dir_all(self.root()).unwrap();
            symlink(&dir, self.hwmon(n)).unwrap();
        }

        fn read(&self, n: u32, file: &str) -> String {
            fs::read_to_string(self.hwmon(n).join(file)).unwrap()
        }

        fn write(&self, n: u32, file: &str, v: &str) {
            fs::write(self.hwmon(n).join(file), v).unwrap();
        }
    }

    const PWM_DEV: &str = "platform/ahb/1e610000.pwm-tach-controller";
    const I2C: &str = "platform/ahb/1e78a000.bus/1e78a100.i2c-bus/i2c-3";

    /// An AST2600-like board: a PWM/tach controller and two tmp75s.
    fn tree() -> Tree {
        let t = Tree {
            tmp: TempDir::new(),
        };
        t.add(
            0,
            &format!("{I2C}/3-0048"),
            "tmp75",
            &[("temp1_input", "23500\n")],
        );
        t.add(
            1,
            PWM_DEV,
            "aspeed_g6_pwm_tach",
            &[
                ("fan1_input", "5000\n"),
                ("fan2_input", "5100\n"),
                ("fan3_input", "0\n"),
                ("fan4_input", "abc\n"),
                ("fan2_fault", "0\n"),
                ("fan3_fault", "1\n"),
                ("pwm1", "255\n"),
                ("pwm2", "255\n"),
                ("pwm3", "255\n"),
                ("pwm4", "255\n"),
                ("pwm1_enable", "2\n"),
            ],
        );
        t.add(
            2,
            &format!("{I2C}/3-0049"),
            "tmp75",
            &[("temp1_input", "-1250\n")],
        );
        t
    }

    fn fan(name: &str, hwmon: &str, device: Option<&str>, n: u32) -> HwmonFan {
        HwmonFan {
            name: name.into(),
            hwmon: hwmon.into(),
            device: device.map(Into::into),
            tach: n,
            pwm: n,
        }
    }

    fn aspeed_fans() -> Vec<HwmonFan> {
        (1..=4)
            .map(|n| fan(&format!("fan{n}"), "aspeed_g6_pwm_tach", None, n))
            .collect()
    }

    fn sensor(name: &str, hwmon: &str, device: Option<&str>, n: u32) -> HwmonSensor {
        HwmonSensor {
            name: name.into(),
            hwmon: hwmon.into(),
            device: device.map(Into::into),
            input: n,
        }
    }

    fn err_text<T>(r: HwResult<T>) -> (HwError, String) {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => {
                let s = e.to_string();
                (e, s)
            }
        }
    }

    #[test]
    fn fans_resolve_and_read() {
        let t = tree();
        let fans = HwmonFans::open(&t.root(), &aspeed_fans()).unwrap();
        assert_eq!(fans.names(), vec!["fan1", "fan2", "fan3", "fan4"]);
        assert_eq!(fans.read_rpm(0).unwrap(), 5000);
        assert_eq!(fans.read_rpm(1).unwrap(), 5100);
        assert_eq!(fans.read_rpm(2).unwrap(), 0);
        t.write(1, "fan1_input", "4321");
        assert_eq!(fans.read_rpm(0).unwrap(), 4321);
        let (e, s) = err_text(fans.read_rpm(4));
        assert!(matches!(e, HwError::NotFound(_)), "{s}");
    }

    #[test]
    fn garbage_content_is_invalid_and_names_the_file() {
        let t = tree();
        let fans = HwmonFans::open(&t.root(), &aspeed_fans()).unwrap();
        let (e, s) = err_text(fans.read_rpm(3));
        assert!(matches!(e, HwError::Invalid(_)), "{s}");
        assert!(s.contains("fan4_input") && s.contains("abc"), "{s}");
        t.write(1, "fan1_input", "-5");
        assert!(matches!(fans.read_rpm(0), Err(HwError::Invalid(_))));
        t.write(1, "fan1_input", "");
        assert!(matches!(fans.read_rpm(0), Err(HwError::Invalid(_))));

        let temps =
            HwmonTemps::open(&t.root(), &[sensor("inlet", "tmp75", Some("3-0048"), 1)]).unwrap();
        t.write(0, "temp1_input", "12.5\n");
        let (e, s) = err_text(temps.read_celsius(0));
        assert!(matches!(e, HwError::Invalid(_)), "{s}");
        assert!(s.contains("temp1_input"), "{s}");
    }

    #[test]
    fn unreadable_input_is_an_io_error_and_not_present() {
        let t = tree();
        let fans = HwmonFans::open(&t.root(), &aspeed_fans()).unwrap();
        assert!(fans.present(0).unwrap());
        // A directory cannot be read as a file, even by root.
        fs::remove_file(t.hwmon(1).join("fan1_input")).unwrap();
        fs::create_dir(t.hwmon(1).join("fan1_input")).unwrap();
        let (e, s) = err_text(fans.read_rpm(0));
        assert!(matches!(e, HwError::Io { .. }), "{s}");
        assert!(s.contains("fan1_input"), "{s}");
        assert!(!fans.present(0).unwrap());
    }

    #[test]
    fn presence_honours_fault_files() {
        let t = tree();
        let fans = HwmonFans::open(&t.root(), &aspeed_fans()).unwrap();
        assert!(fans.present(0).unwrap()); // no fault file
        assert!(fans.present(1).unwrap()); // fault 0
        assert!(!fans.present(2).unwrap()); // fault 1
        assert!(fans.present(3).unwrap()); // readable, if garbage
        assert!(matches!(fans.present(9), Err(HwError::NotFound(_))));
    }

    #[test]
    fn write_pwm_takes_manual_control_first() {
        let t = tree();
        let fans = HwmonFans::open(&t.root(), &aspeed_fans()).unwrap();
        // Opening writes nothing.
        assert_eq!(t.read(1, "pwm1_enable"), "2\n");
        // The level is written as a duty cycle, 0-255.
        fans.write_pwm(0, pct(50)).unwrap();
        assert_eq!(t.read(1, "pwm1_enable"), "1");
        assert_eq!(t.read(1, "pwm1"), "128");
        fans.write_pwm(0, pct(3)).unwrap();
        assert_eq!(t.read(1, "pwm1"), "8");
        // Someone else switched it back to automatic: taken back.
        t.write(1, "pwm1_enable", "2\n");
        fans.write_pwm(0, pct(0)).unwrap();
        assert_eq!(t.read(1, "pwm1_enable"), "1");
        assert_eq!(t.read(1, "pwm1"), "0");
        // No enable file: only the duty is written, none is created.
        fans.write_pwm(1, pct(100)).unwrap();
        assert_eq!(t.read(1, "pwm2"), "255");
        assert!(!t.hwmon(1).join("pwm2_enable").exists());
        assert!(matches!(
            fans.write_pwm(4, pct(1)),
            Err(HwError::NotFound(_))
        ));
    }

    #[test]
    fn vanished_pwm_is_an_io_error_naming_the_file() {
        let t = tree();
        let fans = HwmonFans::open(&t.root(), &aspeed_fans()).unwrap();
        fs::remove_file(t.hwmon(1).join("pwm2")).unwrap();
        let (e, s) = err_text(fans.write_pwm(1, pct(4)));
        assert!(matches!(e, HwError::Io { .. }), "{s}");
        assert!(s.contains("pwm2"), "{s}");
        assert!(!t.hwmon(1).join("pwm2").exists(), "must not create files");
    }

    #[test]
    fn release_goes_full_speed_and_automatic() {
        let t = tree();
        let mut cfg = aspeed_fans();
        // Two rotors on one PWM header.
        cfg.push(HwmonFan {
            pwm: 1,
            ..fan("fan1b", "aspeed_g6_pwm_tach", None, 2)
        });
        let fans = HwmonFans::open(&t.root(), &cfg).unwrap();
        for i in 0..4 {
            fans.write_pwm(i, pct(12)).unwrap();
        }
        assert_eq!(t.read(1, "pwm1_enable"), "1");
        fans.release().unwrap();
        for n in 1..=4 {
            assert_eq!(t.read(1, &format!("pwm{n}")), "255");
        }
        assert_eq!(t.read(1, "pwm1_enable"), "2");
        assert!(!t.hwmon(1).join("pwm2_enable").exists());
    }

    #[test]
    fn temps_resolve_by_device_and_read() {
        let t = tree();
        let temps = HwmonTemps::open(
            &t.root(),
            &[
                sensor("inlet", "tmp75", Some("3-0048"), 1),
                sensor("outlet", "tmp75", Some("i2c-3/3-0049"), 1),
            ],
        )
        .unwrap();
        assert_eq!(temps.names(), vec!["inlet", "outlet"]);
        assert_eq!(temps.read_celsius(0).unwrap(), 23.5);
        assert_eq!(temps.read_celsius(1).unwrap(), -1.25);
        t.write(0, "temp1_input", "41000");
        assert_eq!(temps.read_celsius(0).unwrap(), 41.0);
        assert!(matches!(temps.read_celsius(2), Err(HwError::NotFound(_))));
    }

    #[test]
    fn same_name_without_device_is_ambiguous() {
        let t = tree();
        let (e, s) = err_text(HwmonTemps::open(
            &t.root(),
            &[sensor("inlet", "tmp75", None, 1)],
        ));
        assert!(matches!(e, HwError::Invalid(_)), "{s}");
        assert!(
            s.contains("inlet") && s.contains("ambiguous") && s.contains("\"device\""),
            "{s}"
        );
        assert!(s.contains("3-0048") && s.contains("3-0049"), "{s}");
        // A substring common to both is still ambiguous.
        let (e, _) = err_text(HwmonTemps::open(
            &t.root(),
            &[sensor("inlet", "tmp75", Some("i2c-3"), 1)],
        ));
        assert!(matches!(e, HwError::Invalid(_)));
    }

    #[test]
    fn unknown_device_is_not_found_and_says_what_was_looked_for() {
        let t = tree();
        let (e, s) = err_text(HwmonFans::open(
            &t.root(),
            &[fan("cpu_fan", "nct6775", None, 1)],
        ));
        assert!(matches!(e, HwError::NotFound(_)), "{s}");
        assert!(s.contains("cpu_fan") && s.contains("nct6775"), "{s}");
        let (e, s) = err_text(HwmonTemps::open(
            &t.root(),
            &[sensor("inlet", "tmp75", Some("3-004a"), 1)],
        ));
        assert!(matches!(e, HwError::NotFound(_)), "{s}");
        assert!(
            s.contains("inlet") && s.contains("tmp75") && s.contains("3-004a"),
            "{s}"
        );
    }

    #[test]
    fn missing_files_are_not_found() {
        let t = tree();
        let (e, s) = err_text(HwmonFans::open(
            &t.root(),
            &[fan("fan9", "aspeed_g6_pwm_tach", None, 9)],
        ));
        assert!(matches!(e, HwError::NotFound(_)), "{s}");
        assert!(s.contains("fan9") && s.contains("fan9_input"), "{s}");
        let (e, s) = err_text(HwmonFans::open(
            &t.root(),
            &[HwmonFan {
                pwm: 7,
                ..fan("fan1", "aspeed_g6_pwm_tach", None, 1)
            }],
        ));
        assert!(matches!(e, HwError::NotFound(_)), "{s}");
        assert!(s.contains("pwm7"), "{s}");
        let (e, s) = err_text(HwmonTemps::open(
            &t.root(),
            &[sensor("inlet", "tmp75", Some("3-0048"), 2)],
        ));
        assert!(matches!(e, HwError::NotFound(_)), "{s}");
        assert!(s.contains("temp2_input"), "{s}");
    }

    #[test]
    fn missing_root_is_an_io_error_naming_it() {
        let t = TempDir::new();
        let root = t.0.join("nope");
        let (e, s) = err_text(HwmonFans::open(&root, &aspeed_fans()));
        assert!(matches!(e, HwError::Io { .. }), "{s}");
        assert!(s.contains("nope"), "{s}");
    }

    #[test]
    fn device_link_is_optional_and_old_layout_is_found() {
        let t = TempDir::new();
        let root = t.0.join("hwmon");
        // hwmon0: a plain directory without a `device` link; the path of
        // hwmon0 itself is matched.
        let d0 = root.join("hwmon0");
        fs::create_dir_all(&d0).unwrap();
        fs::write(d0.join("name"), "cpu_temp\n").unwrap();
        fs::write(d0.join("temp1_input"), "50000").unwrap();
        // hwmon1: old driver with everything under `device/`.
        let dev = t.0.join("devices/old");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("name"), "oldchip").unwrap();
        fs::write(dev.join("temp3_input"), "30000").unwrap();
        fs::create_dir_all(root.join("hwmon1")).unwrap();
        symlink(&dev, root.join("hwmon1/device")).unwrap();
        // Not hwmon entries: ignored.
        fs::create_dir_all(root.join("other")).unwrap();
        let temps = HwmonTemps::open(
            &root,
            &[
                sensor("cpu", "cpu_temp", Some("hwmon0"), 1),
                sensor("old", "oldchip", Some("devices/old"), 3),
            ],
        )
        .unwrap();
        assert_eq!(temps.read_celsius(0).unwrap(), 50.0);
        assert_eq!(temps.read_celsius(1).unwrap(), 30.0);
    }
}
