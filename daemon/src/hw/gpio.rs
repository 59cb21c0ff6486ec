//! Power control on a GPIO character device (`/dev/gpiochipN`), through the
//! kernel's GPIO uAPI v2 (gpiocdev).
//!
//! Lines are found by name (the device tree's `gpio-line-names`) on the one
//! configured chip. The power and reset buttons (and the identify LED, if
//! configured) are requested as outputs, deasserted, and the power-good line
//! as an input; all stay requested for the life of the [`GpioPower`], so no
//! other program can drive them meanwhile. Dropping it releases the lines.
//!
//! Polarity is handled here, not by the kernel: the lines are requested
//! active-high and each configured `active_low` inverts the level written or
//! read. The logic (lookup, polarity, optional LED) is written against a
//! small private trait so that it is tested without a GPIO chip.

use std::io;
use std::path::{Path, PathBuf};

use gpiocdev::line::Value;

use super::{HwError, HwResult, PowerHw};
use crate::config::{GpioLine, GpioPowerConfig};

/// The consumer label the lines carry while requested (shown by `gpioinfo`).
pub const CONSUMER: &str = "bmcd";

/// Physical access to requested lines, by offset on the chip. `true` is a
/// high level. The real implementation is a gpiocdev request; tests use a
/// fake.
trait LineIo: Send + Sync {
    fn set_level(&self, offset: u32, high: bool) -> io::Result<()>;
    fn get_level(&self, offset: u32) -> io::Result<bool>;
}

/// A configured line, resolved to its offset on the chip.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    name: String,
    offset: u32,
    active_low: bool,
}

impl Line {
    /// The physical level that means `asserted` on this line.
    fn level(&self, asserted: bool) -> bool {
        asserted != self.active_low
    }
}

/// Every line the power controller uses.
#[derive(Debug, Clone, PartialEq)]
struct Lines {
    power_button: Line,
    reset_button: Line,
    power_good: Line,
    identify_led: Option<Line>,
}

impl Lines {
    /// The outputs with their deasserted physical levels, as requested at
    /// open.
    fn outputs(&self) -> Vec<(u32, bool)> {
        [
            Some(&self.power_button),
            Some(&self.reset_button),
            self.identify_led.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|l| (l.offset, l.level(false)))
        .collect()
    }
}

/// Resolve the configured lines against the names of the chip's lines
/// (`chip_names[offset]`). A name must exist exactly once on the chip, and
/// no line may be configured for two roles.
fn resolve(cfg: &GpioPowerConfig, chip_names: &[String]) -> HwResult<Lines> {
    let chip = cfg.chip.display();
    let find = |role: &str, l: &GpioLine| -> HwResult<Line> {
        let mut hits = chip_names
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == l.name)
            .map(|(i, _)| i);
        let (Some(first), second) = (hits.next(), hits.next()) else {
            return Err(HwError::NotFound(format!(
                "GPIO {role}: no line named '{}' on {chip} ({} lines)",
                l.name,
                chip_names.len()
            )));
        };
        if let Some(second) = second {
            return Err(HwError::Invalid(format!(
                "GPIO {role}: line name '{}' is not unique on {chip} (offsets {first} and {second})",
                l.name
            )));
        }
        let offset = u32::try_from(first)
            .map_err(|_| HwError::Invalid(format!("GPIO {role}: offset {first} is too large")))?;
        Ok(Line {
            name: l.name.clone(),
            offset,
            active_low: l.active_low,
        })
    };
    let lines = Lines {
        power_button: find("power_button", &cfg.power_button)?,
        reset_button: find("reset_button", &cfg.reset_button)?,
        power_good: find("power_good", &cfg.power_good)?,
        identify_led: cfg
            .identify_led
            .as_ref()
            .map(|l| find("identify_led", l))
            .transpose()?,
    };
    let mut all = vec![&lines.power_button, &lines.reset_button, &lines.power_good];
    all.extend(lines.identify_led.as_ref());
    for (i, a) in all.iter().enumerate() {
        if all.iter().skip(i + 1).any(|b| b.offset == a.offset) {
            return Err(HwError::Invalid(format!(
                "GPIO line '{}' on {chip} is configured for two roles",
                a.name
            )));
        }
    }
    Ok(lines)
}

/// The chassis power lines on a GPIO chip.
pub struct GpioPower {
    chip: PathBuf,
    lines: Lines,
    io: Box<dyn LineIo>,
}

impl GpioPower {
    /// Open `cfg.chip`, find the configured lines by name and request them:
    /// the buttons (and the identify LED, if configured) as outputs,
    /// deasserted, power-good as an input.
    ///
    /// Errors: `NotFound` if the chip does not exist or a line name is not
    /// on it; `Invalid` if a name is on the chip twice or one line is
    /// configured for two roles; `Io` if the chip cannot be opened or
    /// queried or the lines cannot be requested (e.g. another program holds
    /// them). Every message names the chip.
    pub fn open(cfg: &GpioPowerConfig) -> HwResult<GpioPower> {
        let path = &cfg.chip;
        let io_err = |what: &str, e: gpiocdev::Error| HwError::Io {
            what: format!("{what} {}", path.display()),
            source: io::Error::other(e),
        };
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(HwError::NotFound(format!(
                    "GPIO chip {} does not exist",
                    path.display()
                )))
            }
            Err(source) => {
                return Err(HwError::Io {
                    what: format!("GPIO chip {}", path.display()),
                    source,
                })
            }
        }
        let chip = gpiocdev::Chip::from_path(path).map_err(|e| io_err("opening GPIO chip", e))?;
        let names = chip
            .line_info_iter()
            .map_err(|e| io_err("listing the lines of GPIO chip", e))?
            .map(|r| r.map(|info| info.name))
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| io_err("listing the lines of GPIO chip", e))?;
        let lines = resolve(cfg, &names)?;
        let mut b = gpiocdev::Request::builder();
        b.on_chip(path).with_consumer(CONSUMER);
        for (offset, high) in lines.outputs() {
            b.with_line(offset).as_output(value(high));
        }
        b.with_line(lines.power_good.offset).as_input();
        let req = b
            .request()
            .map_err(|e| io_err("requesting the power lines on GPIO chip", e))?;
        Ok(GpioPower::with_io(path, lines, Box::new(CdevLines(req))))
    }

    fn with_io(chip: &Path, lines: Lines, io: Box<dyn LineIo>) -> GpioPower {
        GpioPower {
            chip: chip.to_owned(),
            lines,
            io,
        }
    }

    fn set(&self, line: &Line, asserted: bool) -> HwResult<()> {
        self.io
            .set_level(line.offset, line.level(asserted))
            .map_err(|source| self.line_err(line, source))
    }

    fn line_err(&self, line: &Line, source: io::Error) -> HwError {
        HwError::Io {
            what: format!(
                "GPIO line '{}' (offset {}) on {}",
                line.name,
                line.offset,
                self.chip.display()
            ),
            source,
        }
    }
}

/// `Io` errors name the line and the chip.
impl PowerHw for GpioPower {
    fn set_power_button(&self, pressed: bool) -> HwResult<()> {
        self.set(&self.lines.power_button, pressed)
    }

    fn set_reset_button(&self, pressed: bool) -> HwResult<()> {
        self.set(&self.lines.reset_button, pressed)
    }

    fn power_good(&self) -> HwResult<bool> {
        let l = &self.lines.power_good;
        let high = self
            .io
            .get_level(l.offset)
            .map_err(|source| self.line_err(l, source))?;
        Ok(high != l.active_low)
    }

    /// Without a configured `identify_led` line this is a no-op that
    /// succeeds: the chassis controller keeps the identify state (and its
    /// timer) either way, there is just nothing to light.
    fn set_identify_led(&self, on: bool) -> HwResult<()> {
        match &self.lines.identify_led {
            Some(l) => self.set(l, on),
            None => Ok(()),
        }
    }
}

fn value(high: bool) -> Value {
    if high {
        Value::Active
    } else {
        Value::Inactive
    }
}

/// The lines as requested from the kernel (all active-high, so `Active`
/// is a high level).
struct CdevLines(gpiocdev::Request);

impl LineIo for CdevLines {
    fn set_level(&self, offset: u32, high: bool) -> io::Result<()> {
        self.0
            .set_value(offset, value(high))
            .map_err(io::Error::other)
    }

    fn get_level(&self, offset: u32) -> io::Result<bool> {
        self.0
            .value(offset)
            .map(|v| v == Value::Active)
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// Lines as a map of offset to level; offsets not in the map fail.
    #[derive(Default)]
    struct Fake {
        levels: Mutex<HashMap<u32, bool>>,
        writes: Mutex<Vec<(u32, bool)>>,
    }

    impl LineIo for Arc<Fake> {
        fn set_level(&self, offset: u32, high: bool) -> io::Result<()> {
            let mut levels = self.levels.lock().unwrap();
            let l = levels
                .get_mut(&offset)
                .ok_or_else(|| io::Error::from_raw_os_error(22))?;
            *l = high;
            self.writes.lock().unwrap().push((offset, high));
            Ok(())
        }

        fn get_level(&self, offset: u32) -> io::Result<bool> {
            self.levels
                .lock()
                .unwrap()
                .get(&offset)
                .copied()
                .ok_or_else(|| io::Error::from_raw_os_error(5))
        }
    }

    fn line(name: &str, active_low: bool) -> GpioLine {
        GpioLine {
            name: name.into(),
            active_low,
        }
    }

    fn cfg(identify: bool) -> GpioPowerConfig {
        GpioPowerConfig {
            chip: PathBuf::from("/dev/gpiochip0"),
            power_button: line("power-chassis-control", true),
            reset_button: line("reset-control", false),
            power_good: line("power-chassis-good", false),
            identify_led: identify.then(|| line("led-identify", true)),
        }
    }

    fn chip_names() -> Vec<String> {
        [
            "",
            "led-identify",
            "power-chassis-good",
            "",
            "reset-control",
            "other",
            "power-chassis-control",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// What `open` does after the chip: resolve, request the outputs at
    /// their initial levels (the fake starts with them), wrap.
    fn power(cfg: &GpioPowerConfig) -> (GpioPower, Arc<Fake>) {
        let lines = resolve(cfg, &chip_names()).unwrap();
        let fake = Arc::new(Fake::default());
        {
            let mut levels = fake.levels.lock().unwrap();
            levels.extend(lines.outputs());
            levels.insert(lines.power_good.offset, false);
        }
        (
            GpioPower::with_io(&cfg.chip, lines, Box::new(fake.clone())),
            fake,
        )
    }

    fn level(fake: &Fake, offset: u32) -> bool {
        fake.levels.lock().unwrap()[&offset]
    }

    #[test]
    fn lines_are_found_by_name() {
        let lines = resolve(&cfg(true), &chip_names()).unwrap();
        assert_eq!(lines.power_button.offset, 6);
        assert_eq!(lines.reset_button.offset, 4);
        assert_eq!(lines.power_good.offset, 2);
        assert_eq!(lines.identify_led.as_ref().map(|l| l.offset), Some(1));
        assert!(lines.power_button.active_low);
        assert!(!lines.reset_button.active_low);
    }

    #[test]
    fn outputs_start_deasserted_honouring_polarity() {
        let lines = resolve(&cfg(true), &chip_names()).unwrap();
        // Active-low button and LED idle high, active-high reset idles low.
        assert_eq!(lines.outputs(), vec![(6, true), (4, false), (1, true)]);
        let lines = resolve(&cfg(false), &chip_names()).unwrap();
        assert_eq!(lines.outputs(), vec![(6, true), (4, false)]);
    }

    #[test]
    fn missing_line_names_the_line_and_chip() {
        let mut c = cfg(true);
        c.reset_button.name = "sys-reset".into();
        let e = resolve(&c, &chip_names()).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, HwError::NotFound(_)), "{s}");
        assert!(
            s.contains("sys-reset") && s.contains("/dev/gpiochip0") && s.contains("reset_button"),
            "{s}"
        );
    }

    #[test]
    fn duplicate_and_shared_lines_are_invalid() {
        let mut names = chip_names();
        names.push("reset-control".into());
        let e = resolve(&cfg(true), &names).unwrap_err();
        assert!(matches!(e, HwError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("not unique"), "{e}");

        let mut c = cfg(true);
        c.identify_led = Some(line("power-chassis-good", false));
        let e = resolve(&c, &chip_names()).unwrap_err();
        assert!(matches!(e, HwError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("two roles"), "{e}");
    }

    #[test]
    fn buttons_honour_polarity() {
        let (p, fake) = power(&cfg(true));
        p.set_power_button(true).unwrap();
        assert!(!level(&fake, 6), "active-low button pressed = low");
        p.set_power_button(false).unwrap();
        assert!(level(&fake, 6));
        p.set_reset_button(true).unwrap();
        assert!(level(&fake, 4), "active-high reset asserted = high");
        p.set_reset_button(false).unwrap();
        assert!(!level(&fake, 4));
        p.set_identify_led(true).unwrap();
        assert!(!level(&fake, 1));
        p.set_identify_led(false).unwrap();
        assert!(level(&fake, 1));
    }

    #[test]
    fn power_good_honours_polarity() {
        let (p, fake) = power(&cfg(false));
        assert!(!p.power_good().unwrap());
        fake.levels.lock().unwrap().insert(2, true);
        assert!(p.power_good().unwrap());

        let mut c = cfg(false);
        c.power_good.active_low = true;
        let (p, fake) = power(&c);
        fake.levels.lock().unwrap().insert(2, true);
        assert!(!p.power_good().unwrap());
        fake.levels.lock().unwrap().insert(2, false);
        assert!(p.power_good().unwrap());
    }

    #[test]
    fn identify_without_led_is_a_no_op() {
        let (p, fake) = power(&cfg(false));
        assert!(p.lines.identify_led.is_none());
        p.set_identify_led(true).unwrap();
        p.set_identify_led(false).unwrap();
        assert!(fake.writes.lock().unwrap().is_empty());
    }

    #[test]
    fn line_errors_name_line_and_chip() {
        let (p, fake) = power(&cfg(true));
        fake.levels.lock().unwrap().clear();
        let s = p.set_reset_button(true).unwrap_err().to_string();
        assert!(
            s.contains("reset-control") && s.contains("/dev/gpiochip0"),
            "{s}"
        );
        let s = p.power_good().unwrap_err().to_string();
        assert!(s.contains("power-chassis-good"), "{s}");
    }

    #[test]
    fn missing_chip_is_not_found_naming_it() {
        let mut c = cfg(true);
        c.chip = PathBuf::from("/dev/gpiochip-bmcd-test-none");
        let e = GpioPower::open(&c).err().unwrap();
        assert!(matches!(e, HwError::NotFound(_)), "{e}");
        assert!(
            e.to_string().contains("/dev/gpiochip-bmcd-test-none"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_chip_is_an_io_error_naming_it() {
        let path = std::env::temp_dir().join(format!("bmcd-gpio-test-{}", std::process::id()));
        std::fs::write(&path, "").unwrap();
        let mut c = cfg(true);
        c.chip = path.clone();
        let e = GpioPower::open(&c).err().unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(matches!(e, HwError::Io { .. }), "{e}");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    }
}
