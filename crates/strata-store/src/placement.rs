//! Per-layer granularity in a [`LayeredBlobStore`]: a placement plan names the layers this
//! node keeps whole and those it keeps as files; every other layer follows the node's
//! default. The placement decides what a committed layer becomes, and
//! [`LayeredBlobStore::apply_placement`] moves what the store already holds (at start, and
//! when the plan changes), each layer readable throughout.

use crate::blob::{BlobStore, Conversion, Granularity, Placement};
use crate::blob_layered::{list_recipes, LayeredBlobStore};
use crate::StoreError;

impl LayeredBlobStore {
    /// Where the current placement puts `digest`.
    pub(crate) fn placement_of(&self, digest: &strata_oci::Digest) -> Granularity {
        match self.placement.read() {
            Ok(p) => p.of(digest),
            Err(poisoned) => poisoned.into_inner().of(digest),
        }
    }

    /// The current placement.
    pub fn placement(&self) -> Placement {
        match self.placement.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the placement for layers committed from now on; [`Self::apply_placement`]
    /// moves the layers already stored.
    pub fn set_placement(&self, placement: Placement) {
        match self.placement.write() {
            Ok(mut p) => *p = placement,
            Err(poisoned) => *poisoned.into_inner() = placement,
        }
    }

    /// Moves every stored layer to where the placement puts it: a layer a plan names goes
    /// there even if it was kept whole on request before; with a `file` default, the other
    /// whole layers are decomposed (those known not to rebuild exactly stay whole). Layers
    /// at file level that the plan does not name stay as they are. Returns the layers that
    /// moved or that stay whole for a reason; a layer that fails to move is logged and left
    /// readable where it was.
    pub async fn apply_placement(&self) -> Result<Vec<Conversion>, StoreError> {
        let placement = self.placement();
        let mut moved = Vec::new();
        let mut to = Vec::new();
        for blob in self.inner_list().await? {
            match placement.named.get(&blob.digest) {
                Some(Granularity::File) => to.push((blob.digest, Granularity::File)),
                None if placement.default == Granularity::File
                    && self.convert(&blob.digest).await? =>
                {
                    moved.push(Conversion {
                        digest: blob.digest.to_string(),
                        granularity: Granularity::File,
                        changed: true,
                        reason: None,
                    });
                }
                _ => {}
            }
        }
        let recipes = self.recipes_dir().to_path_buf();
        let file_level = tokio::task::spawn_blocking(move || list_recipes(&recipes))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        for digest in file_level {
            if placement.named.get(&digest) == Some(&Granularity::Layer) {
                to.push((digest, Granularity::Layer));
            }
        }
        for (digest, g) in to {
            match self.store_as(&digest, g).await {
                Ok(c) if c.changed || c.reason.is_some() => moved.push(c),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%digest, error = %e, "layer not moved as the placement says")
                }
            }
        }
        Ok(moved)
    }
}
