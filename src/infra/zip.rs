//! A ZIP archive of stored (uncompressed) files: the page's "every overlay of a volume" in one
//! download. PNGs are compressed already, so storing them costs nothing; no ZIP64 (under 4 GB and
//! 65 535 files).

/// The archive of `files` (name, bytes), in order.
pub fn store(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    if files.len() > u16::MAX as usize {
        return Err(format!("{} files: a ZIP holds at most 65 535", files.len()));
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = u32::try_from(out.len()).map_err(|_| "the archive passes 4 GB")?;
        let size = u32::try_from(data.len()).map_err(|_| format!("{name} passes 4 GB"))?;
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        let name = name.as_bytes();
        // Local file header: version 2.0, UTF-8 names (bit 11), stored, no date.
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes());
            v.extend_from_slice(&0x0800u16.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(&[0, 0, 0x21, 0]); // 1980-01-01 00:00
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name);
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        common(&mut central);
        central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    let start = u32::try_from(out.len()).map_err(|_| "the archive passes 4 GB")?;
    let length = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_lists_its_files_with_their_crc() {
        let files = vec![
            ("a.png".to_string(), b"hello".to_vec()),
            ("b/c.png".to_string(), vec![0u8; 3]),
        ];
        let zip = store(&files).unwrap();
        assert_eq!(&zip[..4], b"PK\x03\x04");
        // CRC-32 of "hello".
        assert_eq!(&zip[14..18], &0x3610_a686u32.to_le_bytes());
        let end = zip.len() - 22;
        assert_eq!(&zip[end..end + 4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([zip[end + 10], zip[end + 11]]), 2);
        // The central directory starts where the end record says, with its signature, and its
        // first entry points at the first local header.
        let at = u32::from_le_bytes(zip[end + 16..end + 20].try_into().unwrap()) as usize;
        assert_eq!(&zip[at..at + 4], b"PK\x01\x02");
        assert_eq!(&zip[at + 42..at + 46], &0u32.to_le_bytes());
        let second = at + 46 + "a.png".len();
        assert_eq!(&zip[second..second + 4], b"PK\x01\x02");
    }
}
