//! Media worker: transcoding and face blur (issue 4). Not built yet: this crate only reserves its place in the workspace.
