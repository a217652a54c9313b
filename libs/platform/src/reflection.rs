//! What a port's server reflection may describe: the services the port routes and the types
//! they use, nothing else.
//!
//! The contracts' descriptor set holds every service, public and internal, often in one file
//! (`wallet.proto` has `WalletService` and `WalletInternalService`). Advertising only the
//! port's names (`with_service_name`) still let `file_containing_symbol` hand an anonymous
//! caller of a public port the internal services' files. So each port registers a pruned
//! copy: each file keeps only the routed services, and the messages and enums those services
//! reach through their methods and fields; files left empty are dropped.
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

/// The descriptor set `encoded` cut down to `services` (fully qualified names) and the
/// types they reach.
///
/// # Errors
/// When `encoded` is not a `FileDescriptorSet`.
pub fn pruned(encoded: &[u8], services: &[&str]) -> Result<FileDescriptorSet, prost::DecodeError> {
    let set = FileDescriptorSet::decode(encoded)?;
    let index = TypeIndex::of(&set);
    let wanted: HashSet<&str> = services.iter().copied().collect();

    // Types the routed methods name, then everything their fields name, transitively.
    let mut queue: VecDeque<String> = set
        .file
        .iter()
        .flat_map(|f| f.service.iter().filter(|s| wanted.contains(full_name(f, s.name()).as_str())))
        .flat_map(|s| &s.method)
        .flat_map(|m| [m.input_type().to_owned(), m.output_type().to_owned()])
        .collect();
    let mut kept: HashSet<String> = HashSet::new(); // top-level type names, ".pkg.Name"
    while let Some(name) = queue.pop_front() {
        let Some(top) = index.top_level.get(&name) else { continue };
        if !kept.insert(top.clone()) {
            continue;
        }
        if let Some(message) = index.messages.get(top) {
            queue.extend(field_types(message));
        }
    }

    let mut files: Vec<FileDescriptorProto> = set
        .file
        .into_iter()
        .filter_map(|mut f| {
            let package = f.package().to_owned();
            let prefix = if package.is_empty() { String::new() } else { format!(".{package}") };
            let keep = |name: &str| kept.contains(&format!("{prefix}.{name}"));
            f.service.retain(|s| wanted.contains(full_name_in(&package, s.name()).as_str()));
            f.message_type.retain(|m| keep(m.name()));
            f.enum_type.retain(|e| keep(e.name()));
            // Comments are located by index into the lists just cut.
            f.source_code_info = None;
            let empty = f.service.is_empty() && f.message_type.is_empty() && f.enum_type.is_empty();
            (!empty).then_some(f)
        })
        .collect();
    let names: BTreeSet<String> = files.iter().map(|f| f.name().to_owned()).collect();
    for f in &mut files {
        // A dropped file held nothing a kept one uses; public and weak imports index this list.
        f.dependency.retain(|d| names.contains(d));
        f.public_dependency.clear();
        f.weak_dependency.clear();
    }
    Ok(FileDescriptorSet { file: files })
}

fn full_name(file: &FileDescriptorProto, name: &str) -> String {
    full_name_in(file.package(), name)
}

fn full_name_in(package: &str, name: &str) -> String {
    if package.is_empty() { name.to_owned() } else { format!("{package}.{name}") }
}

/// Every message or enum type a message's fields (and its nested messages' fields) name.
fn field_types(message: &DescriptorProto) -> Vec<String> {
    let mut names: Vec<String> =
        message.field.iter().filter(|f| !f.type_name().is_empty()).map(|f| f.type_name().to_owned()).collect();
    for nested in &message.nested_type {
        names.extend(field_types(nested));
    }
    names
}

/// Fully qualified type names (".pkg.Outer.Inner") to their top-level type, and top-level
/// messages by name.
struct TypeIndex<'a> {
    top_level: HashMap<String, String>,
    messages: HashMap<String, &'a DescriptorProto>,
}

impl<'a> TypeIndex<'a> {
    fn of(set: &'a FileDescriptorSet) -> Self {
        let mut index = Self { top_level: HashMap::new(), messages: HashMap::new() };
        for f in &set.file {
            let prefix = if f.package().is_empty() { String::new() } else { format!(".{}", f.package()) };
            for e in &f.enum_type {
                let name = format!("{prefix}.{}", e.name());
                index.top_level.insert(name.clone(), name);
            }
            for m in &f.message_type {
                let name = format!("{prefix}.{}", m.name());
                index.nested(&name, &name, m);
                index.messages.insert(name, m);
            }
        }
        index
    }

    fn nested(&mut self, top: &str, name: &str, message: &DescriptorProto) {
        self.top_level.insert(name.to_owned(), top.to_owned());
        for e in &message.enum_type {
            self.top_level.insert(format!("{name}.{}", e.name()), top.to_owned());
        }
        for m in &message.nested_type {
            self.nested(top, &format!("{name}.{}", m.name()), m);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn symbols(set: &FileDescriptorSet) -> HashSet<String> {
        set.file
            .iter()
            .flat_map(|f| {
                let p = f.package().to_owned();
                f.service
                    .iter()
                    .map(|s| s.name().to_owned())
                    .chain(f.message_type.iter().map(|m| m.name().to_owned()))
                    .chain(f.enum_type.iter().map(|e| e.name().to_owned()))
                    .map(move |n| full_name_in(&p, &n))
            })
            .collect()
    }

    #[test]
    fn a_public_port_describes_its_service_and_what_it_uses_only() {
        let set = pruned(concert_proto::FILE_DESCRIPTOR_SET, &["concert.wallet.v1.WalletService"]).unwrap();
        let have = symbols(&set);
        assert!(have.contains("concert.wallet.v1.WalletService"));
        assert!(have.contains("concert.wallet.v1.ChargeRequest"), "{have:?}");
        assert!(!have.contains("concert.wallet.v1.WalletInternalService"), "{have:?}");
        assert!(!have.iter().any(|s| s.contains("Internal") || s.contains("Admin")), "{have:?}");
        assert!(!have.contains("concert.wallet.v1.DebitRequest"), "the internal requests stay unseen");
        // Every type a kept message names is itself kept: the set stands on its own.
        let index = TypeIndex::of(&set);
        for message in index.messages.values() {
            for name in field_types(message) {
                assert!(index.top_level.contains_key(&name), "{name} is used but not kept");
            }
        }
        // tonic's reflection accepts it (it resolves every file's dependencies).
        tonic_reflection::server::Builder::configure().register_file_descriptor_set(set).build_v1().unwrap();
    }

    #[test]
    fn an_internal_port_describes_both_of_its_services() {
        let names = ["concert.catalog.v1.CatalogAdminService", "concert.catalog.v1.CatalogInternalService"];
        let have = symbols(&pruned(concert_proto::FILE_DESCRIPTOR_SET, &names).unwrap());
        assert!(names.iter().all(|n| have.contains(*n)), "{have:?}");
        assert!(!have.contains("concert.catalog.v1.CatalogService"), "{have:?}");
    }
}
