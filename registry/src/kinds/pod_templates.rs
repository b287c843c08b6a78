//! core/v1 `podtemplates`: stored templates with upstream's columns.

use k8s_openapi::api::core::v1::PodTemplate;
use serde_json::{Value, json};

use super::{containers_images, format_label_map, typed};
use crate::Strategy;
use crate::table::{Column, name_cell};

/// `podtemplates`.
#[derive(Debug)]
pub(crate) struct PodTemplates;

impl Strategy for PodTemplates {
    typed!(PodTemplate);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Containers", "The names of the template's containers"),
            Column::text("Images", "The images of the template's containers"),
            Column::text("Pod Labels", "The labels of the template's pods"),
        ]
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj, "/template");
        vec![
            name_cell(obj),
            containers,
            images,
            json!(format_label_map(obj.pointer("/template/metadata/labels"))),
        ]
    }
}
