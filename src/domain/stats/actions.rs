//! The actions the plugin sends (protocol.md §5) as Updraft counts them: which mean a bundle
//! failed, which mean it was installed, and the fixed set counted under their own name (any
//! other lands in `other`, so a forged batch cannot mint counter attributes).

/// Actions that mean "this bundle is broken", whatever the network did: they count as
/// failures for auto-pause, and the device is never offered that version again.
/// `download_fail` is missing on purpose: it is transient (network, disk) and retried.
pub const FAILURE_ACTIONS: &[&str] = &[
    "update_fail",
    "checksum_fail",
    "decrypt_fail",
    "unzip_fail",
    "set_fail",
    "windows_path_fail",
    "canonical_path_fail",
    "directory_path_fail",
    "manifest_path_fail",
    "download_manifest_checksum_fail",
];

/// The action that means a device installed a bundle.
pub const INSTALL_ACTION: &str = "set";

/// The actions counted under their own name (the plugin's, protocol.md §5); any other
/// lands in the `other` counter, so a forged batch cannot mint counter attributes.
pub const COUNTED_ACTIONS: &[&str] = &[
    "set",
    "set_fail",
    "set_next",
    "reset",
    "delete",
    "update_fail",
    "download_fail",
    "finish_download_fail",
    "download_0",
    "download_10",
    "download_20",
    "download_30",
    "download_40",
    "download_50",
    "download_60",
    "download_70",
    "download_80",
    "download_90",
    "download_complete",
    "download_zip_start",
    "download_zip_complete",
    "download_manifest_start",
    "download_manifest_complete",
    "download_manifest_file_fail",
    "download_manifest_checksum_fail",
    "download_manifest_brotli_fail",
    "manifest_path_fail",
    "decrypt_fail",
    "checksum_fail",
    "checksum_required",
    "session_key_required",
    "unzip_fail",
    "windows_path_fail",
    "canonical_path_fail",
    "directory_path_fail",
    "low_mem_fail",
    "insufficient_disk_space",
    "rate_limit_reached",
    "blocked_by_server_url",
    "app_moved_to_foreground",
    "app_moved_to_background",
    "app_launch_start",
    "app_launch_ready",
    "app_launch_timeout",
    "os_version_changed",
    "native_app_version_changed",
    "app_crash",
    "app_crash_native",
    "app_anr",
    "app_killed_low_memory",
    "app_killed_excessive_resource_usage",
    "app_initialization_failure",
    "app_memory_warning",
    "webview_javascript_error",
    "webview_unhandled_rejection",
    "webview_resource_error",
    "webview_security_policy_violation",
    "webview_unclean_restart",
    "webview_render_process_gone",
    "webview_content_process_terminated",
    "webview_dom_content_loaded",
    "webview_page_loaded",
];

/// The counter for actions outside `COUNTED_ACTIONS`.
pub const OTHER_ACTION: &str = "other";

pub fn is_failure(action: &str) -> bool {
    FAILURE_ACTIONS.contains(&action)
}

/// The counter an action is counted under: its own name when allow-listed, else `other`.
pub fn counted_action(action: &str) -> &'static str {
    COUNTED_ACTIONS
        .iter()
        .find(|a| **a == action)
        .copied()
        .unwrap_or(OTHER_ACTION)
}
