//! Creates of create-only virtual kinds (the self-subject reviews): the
//! body is decoded and validated like any create, then answered by the
//! kind's strategy for the requesting user. Nothing touches the store.

use serde_json::Value;

use super::{ObjectStore, WriteOptions, Written};
use crate::registry::{Error, ResourceInfo, Result, UserInfo};

impl ObjectStore {
    /// Decodes and validates a POST to a
    /// [`Persistence::Virtual`](crate::registry::Persistence) resource,
    /// without answering it (for reviews the API server answers).
    ///
    /// # Errors
    /// 400 for a malformed body (or unknown fields with `Strict`), 422 Invalid.
    pub fn review_validated(
        &self,
        info: &ResourceInfo,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let (obj, warnings) = Self::decode_body(info, body, opts.field_validation)?;
        Self::invalid(info, &obj, info.strategy.validate(&obj))?;
        Ok(Written {
            object: obj,
            warnings,
            created: true,
        })
    }

    /// POST to a [`Persistence::Virtual`](crate::registry::Persistence)
    /// resource: the answer for `user`, e.g. a SelfSubjectAccessReview with
    /// its `status` filled in.
    ///
    /// # Errors
    /// 400 for a malformed body (or unknown fields with `Strict`), 422
    /// Invalid, 405 if the resource is stored rather than answered.
    pub fn review(
        &self,
        info: &ResourceInfo,
        body: Value,
        user: &UserInfo,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let (obj, warnings) = Self::decode_body(info, body, opts.field_validation)?;
        Self::invalid(info, &obj, info.strategy.validate(&obj))?;
        let object = info.strategy.answer(&obj, user).ok_or_else(|| {
            Error::MethodNotAllowed(format!("{} are stored, not answered", info.qualified()))
        })?;
        Ok(Written {
            object,
            warnings,
            created: true,
        })
    }
}
