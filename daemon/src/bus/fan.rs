//! `org.bmcd.Fan1`: one object per fan at `fan_path(name)`.

use bmcd_api::Health;
use tokio::sync::watch;
use zbus::interface;

use crate::cooling::{CoolingState, FanState};

pub struct FanIface {
    pub index: usize,
    pub name: String,
    pub state: watch::Receiver<CoolingState>,
}

impl FanIface {
    fn get<T>(&self, f: impl Fn(&FanState) -> T, default: T) -> T {
        self.state
            .borrow()
            .fans
            .get(self.index)
            .map(f)
            .unwrap_or(default)
    }
}

#[interface(name = "org.bmcd.Fan1")]
impl FanIface {
    /// The configured name: fixed for the life of the object.
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }
    #[zbus(property)]
    fn rpm(&self) -> u32 {
        self.get(|f| f.rpm, 0)
    }
    #[zbus(property)]
    fn pwm(&self) -> u8 {
        self.get(|f| f.pwm, 0)
    }
    #[zbus(property)]
    fn present(&self) -> bool {
        self.get(|f| f.present, false)
    }
    #[zbus(property)]
    fn health(&self) -> Health {
        self.get(|f| f.health, Health::Failed)
    }
}
