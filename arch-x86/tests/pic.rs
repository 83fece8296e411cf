//! Legacy 8259: remap and mask against the 8259 model.

use arch_x86::model::Machine;
use arch_x86::*;

#[test]
fn remap_and_mask_initialises_both_pics_and_masks_every_line() {
    let m = Machine::new(&[0]);
    let pic = Pic8259::new(m.ports());
    pic.remap_and_mask().unwrap();
    let [master, slave] = m.pics();
    assert_eq!((master.offset, slave.offset), (0x20, 0x28));
    assert_eq!(
        (master.icw3, slave.icw3),
        (0x04, 0x02),
        "slave cascaded on IR2"
    );
    assert_eq!((master.icw4, slave.icw4), (0x01, 0x01), "8086 mode");
    assert_eq!((master.inits, slave.inits), (1, 1));
    // ICW1 clears the mask: the driver must set it again afterwards.
    assert_eq!((master.imr, slave.imr), (0xFF, 0xFF));
    assert_eq!(pic.masks(), 0xFFFF);
}

#[test]
fn remap_keeps_masks_and_validates_offsets() {
    let m = Machine::new(&[0]);
    let pic = Pic8259::new(m.ports());
    pic.set_masks(0xFFFB);
    pic.remap(0x30, 0x38).unwrap();
    assert_eq!(pic.masks(), 0xFFFB);
    assert_eq!(m.pics()[0].offset, 0x30);
    assert_eq!(pic.remap(0x08, 0x70), Err(PicError::BadOffset(0x08)));
    assert_eq!(pic.remap(0x21, 0x28), Err(PicError::BadOffset(0x21)));
    assert_eq!(m.pics()[0].inits, 1, "a refused remap touches nothing");
    pic.set_masked(10, false).unwrap();
    assert_eq!(pic.masks(), 0xFBFB);
    assert_eq!(pic.set_masked(16, true), Err(PicError::BadLine(16)));
    pic.eoi(10).unwrap();
    assert_eq!((m.pics()[0].eois, m.pics()[1].eois), (1, 1));
}
