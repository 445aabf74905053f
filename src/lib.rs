//! tiffin
