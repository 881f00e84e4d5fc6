//! `register_backend` and `register_framing`: the descriptors a library
//! registers from its entry, copied (OBS style, as far as their `size`
//! says) and checked before the host keeps them.

use std::ffi::{c_char, CStr};
use std::mem::{offset_of, size_of, MaybeUninit};
use std::sync::atomic::Ordering;

use websocksy_abi::{
    wsy_backend, wsy_framing, wsy_plugin, wsy_status, WSY_ABI_MAJOR, WSY_ABI_MINOR, WSY_EEXIST,
    WSY_EINVAL, WSY_ERROR, WSY_ESTATE, WSY_EVERSION, WSY_OK,
};

use super::handles::plugin_ctx;
use super::{guard, lock};
use crate::plugin::one_line;

/// The smallest descriptors ABI 2.0 accepts: a plugin's descriptor must be
/// at least this long. (They stay the 2.0 sizes when later minors append
/// fields.) A framing may end before `configure`, which was appended to 2.0
/// before its release: plugins built before that still load, without
/// options.
const BACKEND_SIZE_2_0: usize = 64;
const FRAMING_SIZE_2_0: usize = offset_of!(wsy_framing, configure);
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<wsy_backend>() == BACKEND_SIZE_2_0);
    assert!(FRAMING_SIZE_2_0 == 56);
    assert!(size_of::<wsy_framing>() == 64);
};

use websocksy_abi::has_field;

/// The OBS rule: a host of ABI `host` accepts a descriptor of ABI `plugin`
/// when the majors are equal and the plugin's minor is not newer. A plugin
/// that declares 2.2 needs a 2.2 host; one that declares 2.0 loads on
/// every 2.x host.
const fn supported(host: (u16, u16), plugin: (u16, u16)) -> bool {
    plugin.0 == host.0 && plugin.1 <= host.1
}

/// A registered descriptor, copied out of the plugin.
#[derive(Clone, Copy)]
pub(crate) struct Desc<T>(pub T);

// SAFETY: a descriptor holds the plugin's function pointers, a static name
// and the plugin's userdata. The header makes the plugin responsible for
// userdata being usable from the threads it documents (query: any worker
// thread, concurrently; framing callbacks: the event loop thread only; the
// rest, a framing's configure included: the main thread), and the host keeps
// to those threads.
unsafe impl<T> Send for Desc<T> {}
// SAFETY: as above; the host never writes through a descriptor's pointers.
unsafe impl<T> Sync for Desc<T> {}

/// A backend a library registered.
#[derive(Clone)]
pub(crate) struct BackendDesc {
    pub name: String,
    pub raw: Desc<wsy_backend>,
}

/// A framing a library registered.
#[derive(Clone)]
pub(crate) struct FramingDesc {
    pub name: String,
    pub raw: Desc<wsy_framing>,
}

#[derive(Default)]
pub(super) struct Registrations {
    pub(super) backends: Vec<BackendDesc>,
    pub(super) framings: Vec<FramingDesc>,
    /// Registrations refused, as one-line messages, for the loader to report.
    pub(super) errors: Vec<String>,
}

/// Descriptor types the host copies (OBS style, `size` first).
///
/// # Safety
/// All-zero bytes must be a valid value (integers, raw pointers, `Option`
/// of function pointers), and the struct must start with `uint32_t size,
/// uint16_t abi_major, uint16_t abi_minor`.
unsafe trait Descriptor: Copy {
    const KIND: &'static str;
    const SIZE_2_0: usize;
}
// SAFETY: integers, pointers and Option<fn>; header layout as required.
unsafe impl Descriptor for wsy_backend {
    const KIND: &'static str = "backend";
    const SIZE_2_0: usize = BACKEND_SIZE_2_0;
}
// SAFETY: as above.
unsafe impl Descriptor for wsy_framing {
    const KIND: &'static str = "framing";
    const SIZE_2_0: usize = FRAMING_SIZE_2_0;
}

/// Copy a descriptor: the first `size` bytes, the rest zero. Checks the
/// version and the size.
///
/// # Safety
/// `src` is non-NULL and readable for the `size` it declares (the plugin's
/// promise).
unsafe fn copy_descriptor<T: Descriptor>(src: *const T) -> Result<T, (wsy_status, String)> {
    let src = src.cast::<u8>();
    // SAFETY: every descriptor starts with a uint32_t size.
    let size = unsafe { src.cast::<u32>().read_unaligned() } as usize;
    if size < 8 {
        return Err((
            WSY_EINVAL,
            format!(
                "{} descriptor has size {size}, too small to be one",
                T::KIND
            ),
        ));
    }
    // SAFETY: size >= 8 covers abi_major at 4 and abi_minor at 6.
    let (major, minor) = unsafe {
        (
            src.add(4).cast::<u16>().read_unaligned(),
            src.add(6).cast::<u16>().read_unaligned(),
        )
    };
    if !supported((WSY_ABI_MAJOR, WSY_ABI_MINOR), (major, minor)) {
        return Err((
            WSY_EVERSION,
            format!(
                "{} built for ABI {major}.{minor}, host supports {WSY_ABI_MAJOR}.{WSY_ABI_MINOR}",
                T::KIND
            ),
        ));
    }
    if size < T::SIZE_2_0 {
        return Err((
            WSY_EINVAL,
            format!(
                "{} descriptor has size {size}, smaller than ABI 2.0's {}",
                T::KIND,
                T::SIZE_2_0
            ),
        ));
    }
    let mut out = MaybeUninit::<T>::zeroed();
    // SAFETY: `src` is readable for `size` bytes, `out` writable for
    // size_of::<T>(), we copy the smaller; they cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(src, out.as_mut_ptr().cast::<u8>(), size.min(size_of::<T>()))
    };
    // SAFETY: zero is valid for every field (Descriptor's contract), and the
    // copied prefix holds values the plugin wrote as the same C types.
    Ok(unsafe { out.assume_init() })
}

/// A descriptor's `name`: non-empty UTF-8 without spaces or control characters.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string (the plugin's promise).
unsafe fn descriptor_name(kind: &str, name: *const c_char) -> Result<String, (wsy_status, String)> {
    if name.is_null() {
        return Err((WSY_EINVAL, format!("{kind} descriptor has no name (NULL)")));
    }
    // SAFETY: per the contract, NUL-terminated.
    let raw = unsafe { CStr::from_ptr(name) };
    let s = raw
        .to_str()
        .map_err(|_| (WSY_EINVAL, format!("{kind} name is not valid UTF-8")))?;
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            WSY_EINVAL,
            format!("{kind} name '{}' is empty or has spaces", one_line(s)),
        ));
    }
    Ok(s.to_string())
}

/// The common part of register_backend and register_framing.
///
/// # Safety
/// `desc` NULL or a
/// descriptor readable for its `size`.
unsafe fn register<T: Descriptor>(
    plugin: *mut wsy_plugin,
    desc: *const T,
    check: impl FnOnce(&T) -> Result<String, (wsy_status, String)>,
    add: impl FnOnce(&mut Registrations, String, T) -> Result<(), (wsy_status, String)>,
) -> wsy_status {
    let Some(ctx) = plugin_ctx(plugin) else {
        return WSY_EINVAL;
    };
    let result = if !ctx.registering.load(Ordering::SeqCst) {
        Err((
            WSY_ESTATE,
            format!("register_{} called outside the entry", T::KIND),
        ))
    } else if desc.is_null() {
        Err((WSY_EINVAL, format!("register_{} called with NULL", T::KIND)))
    } else {
        // SAFETY: per the contract.
        unsafe { copy_descriptor(desc) }
            .and_then(|d| check(&d).map(|name| (name, d)))
            .and_then(|(name, d)| {
                let mut regs = lock(&ctx.regs);
                add(&mut regs, name, d)
            })
    };
    match result {
        Ok(()) => WSY_OK,
        Err((status, msg)) => {
            if status == WSY_ESTATE {
                ctx.log(log::Level::Warn, &msg);
            } else {
                lock(&ctx.regs).errors.push(msg);
            }
            status
        }
    }
}

pub(super) unsafe extern "C" fn register_backend(
    plugin: *mut wsy_plugin,
    backend: *const wsy_backend,
) -> wsy_status {
    guard(WSY_ERROR, || {
        let check = |d: &wsy_backend| {
            // SAFETY: `name` is the plugin's static string (or NULL).
            let name = unsafe { descriptor_name("backend", d.name) }?;
            if d.query.is_none() {
                return Err((
                    WSY_EINVAL,
                    format!("backend '{name}' has no query function"),
                ));
            }
            Ok(name)
        };
        let add = |r: &mut Registrations, name: String, d: wsy_backend| {
            if r.backends.iter().any(|b| b.name == name) {
                return Err((WSY_EEXIST, format!("backend '{name}' is registered twice")));
            }
            r.backends.push(BackendDesc { name, raw: Desc(d) });
            Ok(())
        };
        // SAFETY: the pointers the plugin passed, checked inside.
        unsafe { register(plugin, backend, check, add) }
    })
}

pub(super) unsafe extern "C" fn register_framing(
    plugin: *mut wsy_plugin,
    framing: *const wsy_framing,
) -> wsy_status {
    guard(WSY_ERROR, || {
        let check = |d: &wsy_framing| {
            // SAFETY: `name` is the plugin's static string (or NULL).
            let name = unsafe { descriptor_name("framing", d.name) }?;
            if d.frame.is_none() {
                return Err((
                    WSY_EINVAL,
                    format!("framing '{name}' has no frame function"),
                ));
            }
            Ok(name)
        };
        let add = |r: &mut Registrations, name: String, mut d: wsy_framing| {
            if r.framings.iter().any(|f| f.name == name) {
                return Err((WSY_EEXIST, format!("framing '{name}' is registered twice")));
            }
            // copy_descriptor zeroed what lies past `size`; a size that ends
            // inside `configure` would leave part of a pointer: drop it.
            let (at, len) = (
                offset_of!(wsy_framing, configure),
                size_of::<Option<websocksy_abi::wsy_configure_fn>>(),
            );
            if !has_field(d.size, at, len) {
                d.configure = None;
            }
            r.framings.push(FramingDesc { name, raw: Desc(d) });
            Ok(())
        };
        // SAFETY: the pointers the plugin passed, checked inside.
        unsafe { register(plugin, framing, check, add) }
    })
}

#[cfg(test)]
mod tests {
    use super::super::handles::{error_set, host_log, ErrorSlot, PluginCtx};
    use super::super::s;
    use super::*;
    use std::path::PathBuf;
    use websocksy_abi::{wsy_error, wsy_str, WSY_LOG_ERROR};

    fn framing_desc(size: u32, major: u16, minor: u16) -> wsy_framing {
        unsafe extern "C" fn frame(
            _: *mut std::ffi::c_void,
            _: *mut std::ffi::c_void,
            _: *const u8,
            _: usize,
            _: usize,
            _: *mut u32,
        ) -> i64 {
            0
        }
        wsy_framing {
            size,
            abi_major: major,
            abi_minor: minor,
            name: c"f1".as_ptr(),
            userdata: std::ptr::null_mut(),
            state_new: None,
            state_free: None,
            frame: Some(frame),
            finish: None,
            configure: Some(configure),
        }
    }

    unsafe extern "C" fn configure(
        _: *mut std::ffi::c_void,
        _: wsy_str,
        _: wsy_str,
        _: *mut wsy_error,
    ) -> wsy_status {
        WSY_OK
    }

    #[test]
    fn registration_rules() {
        let ctx = PluginCtx::leak("reg", PathBuf::from("reg.so"));
        let p = ctx.as_ptr();
        let good = framing_desc(FRAMING_SIZE_2_0 as u32, 2, 0);
        // SAFETY: descriptors on the stack, a leaked context.
        unsafe {
            assert_eq!(register_framing(p, &good), WSY_ESTATE, "outside the entry");
            ctx.registering(|| {
                assert_eq!(register_framing(p, &good), WSY_OK);
                assert_eq!(register_framing(p, &good), WSY_EEXIST);
                assert_eq!(register_framing(p, &framing_desc(64, 1, 0)), WSY_EVERSION);
                assert_eq!(register_framing(p, &framing_desc(64, 2, 99)), WSY_EVERSION);
                assert_eq!(register_framing(p, &framing_desc(64, 2, 3)), WSY_EVERSION);
                assert_eq!(register_framing(p, &framing_desc(40, 2, 0)), WSY_EINVAL);
                assert_eq!(register_framing(p, std::ptr::null()), WSY_EINVAL);
                assert_eq!(register_framing(std::ptr::null_mut(), &good), WSY_EINVAL);
                let mut no_frame = good;
                no_frame.frame = None;
                no_frame.name = c"f2".as_ptr();
                assert_eq!(register_framing(p, &no_frame), WSY_EINVAL);
                let mut spaced = good;
                spaced.name = c"a b".as_ptr();
                assert_eq!(register_framing(p, &spaced), WSY_EINVAL);
            });
        }
        let (b, f, errors) = ctx.take();
        assert!(b.is_empty());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name, "f1");
        assert!(
            errors
                .iter()
                .any(|e| e == "framing built for ABI 1.0, host supports 2.2"),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e == "framing built for ABI 2.99, host supports 2.2"),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("smaller than ABI 2.0's 56")),
            "{errors:?}"
        );
    }

    #[test]
    fn minors_up_to_the_hosts_are_accepted() {
        // This host is 2.2: descriptors declaring 2.0 (as the 2.0 plugins
        // were built, with the 2.0 sizes), 2.1 and 2.2 all register.
        assert_eq!((WSY_ABI_MAJOR, WSY_ABI_MINOR), (2, 2));
        let ctx = PluginCtx::leak("minors", PathBuf::from("minors.so"));
        let p = ctx.as_ptr();
        // SAFETY: descriptors on the stack, a leaked context.
        unsafe {
            ctx.registering(|| {
                let mut old = framing_desc(FRAMING_SIZE_2_0 as u32, 2, 0);
                old.name = c"old".as_ptr();
                assert_eq!(register_framing(p, &old), WSY_OK);
                let mut new = framing_desc(size_of::<wsy_framing>() as u32, 2, 1);
                new.name = c"new".as_ptr();
                assert_eq!(register_framing(p, &new), WSY_OK);
            });
        }
        let (_, f, errors) = ctx.take();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(f.len(), 2);

        // The rule itself, for hosts other than this one: a plugin built
        // for 2.1 is refused by a 2.0 host, a 2.0 plugin loads on both.
        assert!(supported((2, 0), (2, 0)));
        assert!(!supported((2, 0), (2, 1)));
        assert!(supported((2, 1), (2, 0)));
        assert!(supported((2, 1), (2, 1)));
        assert!(!supported((2, 1), (2, 2)));
        assert!(!supported((2, 1), (1, 0)));
        assert!(!supported((2, 1), (3, 0)));
        assert!(supported((2, 2), (2, 1)));
        assert!(supported((2, 2), (2, 2)));
        assert!(!supported((2, 2), (2, 3)));
    }

    #[test]
    fn configure_is_read_only_when_size_covers_it() {
        let ctx = PluginCtx::leak("sizes", PathBuf::from("sizes.so"));
        let p = ctx.as_ptr();
        let full = size_of::<wsy_framing>() as u32;
        let old = offset_of!(wsy_framing, configure) as u32;
        let names = [c"full", c"old", c"partial"];
        // SAFETY: descriptors on the stack, readable for their whole sizeof
        // (so for any smaller declared size too); a leaked context.
        unsafe {
            ctx.registering(|| {
                for (name, size) in names.iter().zip([full, old, old + 4]) {
                    // Every descriptor has `configure` set in memory; only
                    // the declared size says whether it is there.
                    let mut d = framing_desc(size, 2, 0);
                    d.name = name.as_ptr();
                    assert_eq!(register_framing(p, &d), WSY_OK, "size {size}");
                }
                // One byte short of the first 2.0 layout is refused.
                assert_eq!(
                    register_framing(p, &framing_desc(old - 1, 2, 0)),
                    WSY_EINVAL
                );
            });
        }
        let (_, f, errors) = ctx.take();
        let got: Vec<(&str, u32, bool)> = f
            .iter()
            .map(|d| (d.name.as_str(), d.raw.0.size, d.raw.0.configure.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("full", full, true),
                ("old", old, false),
                ("partial", old + 4, false)
            ]
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("smaller than ABI 2.0's 56"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_larger_descriptor_is_read_up_to_what_the_host_knows() {
        #[repr(C)]
        struct Future {
            d: wsy_framing,
            extra: u64,
        }
        let mut f = Future {
            d: framing_desc(size_of::<Future>() as u32, 2, 0),
            extra: 7,
        };
        f.d.size = size_of::<Future>() as u32;
        // SAFETY: readable for its declared size.
        let copied = unsafe { copy_descriptor((&f as *const Future).cast::<wsy_framing>()) }
            .ok()
            .unwrap();
        assert_eq!(copied.size as usize, size_of::<Future>());
        assert!(copied.frame.is_some());
        assert_eq!(f.extra, 7);
    }

    #[test]
    fn unknown_pointers_are_refused() {
        let mut bogus = [0u64; 16];
        let p = bogus.as_mut_ptr().cast::<wsy_plugin>();
        let good = framing_desc(FRAMING_SIZE_2_0 as u32, 2, 0);
        // SAFETY: the host must not dereference pointers it did not make.
        unsafe {
            host_log(p, WSY_LOG_ERROR, s("never printed"));
            assert_eq!(register_framing(p, &good), WSY_EINVAL);
            error_set(bogus.as_mut_ptr().cast(), s("ignored"));
        }
        assert_eq!(bogus, [0u64; 16]);
        let slot = ErrorSlot::default();
        let stale = slot.as_ptr();
        drop(slot);
        // SAFETY: a dropped slot is refused, not written.
        unsafe { error_set(stale, s("late")) };
    }
}
