//! The machine's fully-qualified name, which fixes its nodeId (SPEC §3).

use std::ffi::{CStr, CString};

/// The fully-qualified host name: the canonical name of `gethostname()`
/// when the resolver knows one, else the plain host name.
pub fn local_fqdn() -> String {
    let host = gethostname();
    canonical_name(&host).unwrap_or(host)
}

fn gethostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it (we keep the last byte zero whatever it does).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn canonical_name(host: &str) -> Option<String> {
    let c_host = CString::new(host).ok()?;
    // SAFETY: zeroed addrinfo is a valid "no hints" value; we set flags only.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings and pointers; res is freed below.
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    // SAFETY: res is a valid list from getaddrinfo until freeaddrinfo.
    let name = unsafe {
        let canon = (*res).ai_canonname;
        let name = if canon.is_null() { None } else { Some(CStr::from_ptr(canon).to_string_lossy().into_owned()) };
        libc::freeaddrinfo(res);
        name
    };
    name.filter(|n| !n.is_empty())
}
