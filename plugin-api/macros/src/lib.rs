//! `#[switchboard_plugin_api::plugin]`: say which hooks a plugin implements in one place,
//! by implementing them.
//!
//! On `impl Plugin for MyPlugin { ... }` the attribute adds `const HOOKS` with exactly the
//! hooks whose methods the block defines, and exports the type as the component's plugin
//! (what `export_plugin!(MyPlugin)` does). The manifest may still narrow the hooks with
//! `hooks = [...]`, but need not list them.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{ImplItem, ItemImpl, parse_macro_input};

/// The hook methods of `Plugin` and their `HookSet` flags.
const HOOKS: &[(&str, &str)] = &[
    ("message_pre_send", "MESSAGE_PRE_SEND"),
    ("message_delivered", "MESSAGE_DELIVERED"),
    ("on_login", "ON_LOGIN"),
    ("on_connect", "ON_CONNECT"),
    ("command", "COMMAND"),
    ("authenticate", "AUTHENTICATE"),
    ("file_pre_upload", "FILE_PRE_UPLOAD"),
    ("file_pre_download", "FILE_PRE_DOWNLOAD"),
];

/// Derive `Plugin::HOOKS` from the hook methods of an `impl Plugin for T` block and export
/// `T`. See the crate documentation.
#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new_spanned(attr, "#[plugin] takes no arguments")
            .to_compile_error()
            .into();
    }
    let mut block = parse_macro_input!(item as ItemImpl);
    let is_plugin_impl = block
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|segment| segment.ident == "Plugin");
    if !is_plugin_impl {
        return syn::Error::new_spanned(
            &block.self_ty,
            "#[plugin] goes on an `impl Plugin for YourType { ... }` block",
        )
        .to_compile_error()
        .into();
    }
    if let Some(hooks) = block.items.iter().find_map(|item| match item {
        ImplItem::Const(c) if c.ident == "HOOKS" => Some(c),
        _ => None,
    }) {
        return syn::Error::new_spanned(
            hooks,
            "with #[plugin] the hooks come from the methods you implement: remove `HOOKS`",
        )
        .to_compile_error()
        .into();
    }
    let flags: Vec<_> = block
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Fn(f) => HOOKS
                .iter()
                .find(|(method, _)| f.sig.ident == method)
                .map(|(_, flag)| format_ident!("{flag}")),
            _ => None,
        })
        .collect();
    // `union` is a const fn of the flags type; `|` is not usable in a const.
    block.items.push(syn::parse_quote! {
        const HOOKS: ::switchboard_plugin_api::HookSet =
            ::switchboard_plugin_api::HookSet::empty()
                #(.union(::switchboard_plugin_api::HookSet::#flags))*;
    });
    let self_ty = &block.self_ty;
    quote! {
        #block
        ::switchboard_plugin_api::export_plugin!(#self_ty);
    }
    .into()
}
