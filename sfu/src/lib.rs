//! Media plane: a WebRTC SFU (issue 3). Not built yet: this crate only reserves its place in the workspace.
