//! `org.bmcd.Dump1` at `/org/bmcd/dumps` and one `org.bmcd.DumpEntry1`
//! per finished dump at `/org/bmcd/dumps/<id>`. The controller is
//! `crate::dump`; this file only adapts it and follows its list of dumps
//! (objects added and removed as dumps are made, rotated out or deleted).

use std::collections::BTreeSet;
use std::sync::Arc;

use bmcd_api::{dump_path, Error};
use zbus::interface;
use zbus::message::Header;
use zbus::zvariant::{OwnedFd, OwnedObjectPath};

use super::method::{Methods, Options};
use super::registry::Registry;
use super::task::TaskObjects;
use crate::dump::{DumpError, DumpInfo, Dumps};

impl From<DumpError> for Error {
    fn from(e: DumpError) -> Error {
        let text = e.to_string();
        Error::from_name(e.name(), text.clone()).unwrap_or(Error::Internal(text))
    }
}

pub struct DumpManagerIface {
    pub m: Arc<Methods>,
    pub tasks: Arc<TaskObjects>,
    pub dumps: Arc<Dumps>,
}

#[interface(name = "org.bmcd.Dump1")]
impl DumpManagerIface {
    async fn create(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        self.m
            .act(&hdr, &options, String::new(), |caller| async move {
                let id = self.dumps.create(caller.uid)?;
                self.tasks.expose(id).await
            })
            .await
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn max_dumps(&self) -> u32 {
        self.dumps.max_dumps()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn max_size(&self) -> u64 {
        self.dumps.max_size()
    }
}

/// One finished dump; its properties never change.
pub struct DumpEntryIface {
    pub m: Arc<Methods>,
    pub dumps: Arc<Dumps>,
    pub info: DumpInfo,
}

#[interface(name = "org.bmcd.DumpEntry1")]
impl DumpEntryIface {
    async fn open(
        &self,
        options: Options,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedFd, Error> {
        let id = self.info.id;
        self.m
            .act(&hdr, &options, format!("dump={id}"), |_| async move {
                let f = self.dumps.open_file(id)?;
                Ok::<_, Error>(OwnedFd::from(std::os::fd::OwnedFd::from(f)))
            })
            .await
    }

    async fn delete(&self, options: Options, #[zbus(header)] hdr: Header<'_>) -> Result<(), Error> {
        let id = self.info.id;
        self.m
            .act(&hdr, &options, format!("dump={id}"), |_| async move {
                self.dumps.delete(id)
            })
            .await
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> u64 {
        self.info.id
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn file_name(&self) -> String {
        self.info.file_name.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn size(&self) -> u64 {
        self.info.size
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn time(&self) -> u64 {
        self.info.time_ms
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn digest(&self) -> String {
        self.info.digest.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn truncated(&self) -> bool {
        self.info.truncated
    }
}

/// Register the manager and the dumps there are now, then follow the
/// controller's list in the background.
pub async fn serve(
    reg: &Arc<Registry>,
    m: &Arc<Methods>,
    tasks: &Arc<TaskObjects>,
    dumps: Arc<Dumps>,
) -> zbus::Result<()> {
    let mut on_bus = BTreeSet::new();
    let mut rx = dumps.subscribe();
    sync(reg, m, &dumps, &mut on_bus, &mut rx).await;
    reg.add_constant(
        bmcd_api::DUMPS_PATH,
        DumpManagerIface {
            m: m.clone(),
            tasks: tasks.clone(),
            dumps: dumps.clone(),
        },
    )
    .await?;
    dumps.set_followed();
    let (reg, m) = (reg.clone(), m.clone());
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            sync(&reg, &m, &dumps, &mut on_bus, &mut rx).await;
        }
    });
    Ok(())
}

/// Make the objects match the controller's list.
async fn sync(
    reg: &Registry,
    m: &Arc<Methods>,
    dumps: &Arc<Dumps>,
    on_bus: &mut BTreeSet<u64>,
    rx: &mut tokio::sync::watch::Receiver<std::collections::BTreeMap<u64, DumpInfo>>,
) {
    let list = rx.borrow_and_update().clone();
    let gone: Vec<u64> = on_bus
        .iter()
        .filter(|id| !list.contains_key(id))
        .copied()
        .collect();
    for id in gone {
        if let Err(e) = reg.remove::<DumpEntryIface>(&dump_path(id)).await {
            log::error!("dump {id}: remove its object: {e}");
        }
        on_bus.remove(&id);
    }
    for (id, info) in list {
        if on_bus.contains(&id) {
            continue;
        }
        let iface = DumpEntryIface {
            m: m.clone(),
            dumps: dumps.clone(),
            info,
        };
        match reg.add_constant(&dump_path(id), iface).await {
            Ok(()) => {
                on_bus.insert(id);
            }
            Err(e) => log::error!("dump {id}: add its object: {e}"),
        }
    }
    dumps.on_bus(on_bus.clone());
}
