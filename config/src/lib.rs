//! tiffin configuration (being written).
