//! `guestInstallPrefix` and `timezone`: values the guest's boot reads that no
//! other section owns (`LIMA_CIDATA_GUEST_INSTALL_PREFIX` in `lima.env`; the
//! zone cloud-init writes to `/etc/timezone`).

use super::V;
use crate::spec::types::LimaYaml;

pub(super) fn validate_guest(v: &mut V, y: &LimaYaml) {
    if let Some(prefix) = &y.guest_install_prefix {
        v.no_control("guestInstallPrefix", prefix);
    }
    if let Some(tz) = &y.timezone {
        v.no_control("timezone", tz);
    }
}
