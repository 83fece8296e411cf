//! The x86 interrupt ids: [`Vector`] (an IDT vector a device or the kernel
//! may use, never an exception vector) and [`ApicId`] (a local APIC's id).
//!
//! Every API of this crate that takes or returns a vector uses [`Vector`],
//! so a value below 32 (#DE ... the reserved exceptions, Intel SDM vol. 3A
//! 6.3.1) is refused once, at the edge, by [`Vector::new`], and never
//! reaches the vector matrix, an IOAPIC entry, an MSI message or the ICR.

use core::fmt;

/// An interrupt vector in `32..=255`: vectors 0-31 are the architecture's
/// exceptions and reserved vectors (SDM vol. 3A 6.3.1), which no APIC
/// source may deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vector(u8);

/// The error of [`Vector::new`]: the value is an exception vector (0-31).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionVector(pub u8);

impl fmt::Display for ExceptionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vector {:#04x} is an exception vector (0-31); interrupt vectors are 32-255",
            self.0
        )
    }
}

impl Vector {
    /// The first vector that is not an exception.
    pub const FIRST: Vector = Vector(32);
    /// The last vector.
    pub const LAST: Vector = Vector(255);

    /// `vector`, if it is not an exception vector.
    pub const fn new(vector: u8) -> Result<Self, ExceptionVector> {
        if vector < Self::FIRST.0 {
            Err(ExceptionVector(vector))
        } else {
            Ok(Self(vector))
        }
    }

    /// Vector `N`, checked at compile time: `Vector::of::<0xEC>()` in a
    /// `const` (a value below 32 does not compile).
    pub const fn of<const N: u8>() -> Self {
        const {
            assert!(
                N >= 32,
                "exception vectors (0-31) are not interrupt vectors"
            )
        };
        Self(N)
    }

    /// The raw vector number (what the IDT, the ICR and the IRR use).
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The index into 256-entry per-vector tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every vector, 32 to 255.
    pub fn all() -> impl Iterator<Item = Vector> {
        (Self::FIRST.0..=Self::LAST.0).map(Vector)
    }
}

impl TryFrom<u8> for Vector {
    type Error = ExceptionVector;
    fn try_from(v: u8) -> Result<Self, ExceptionVector> {
        Self::new(v)
    }
}

impl From<Vector> for u8 {
    fn from(v: Vector) -> u8 {
        v.0
    }
}

// A vector compares with the raw field of a register or message (an IOAPIC
// entry's or an LVT's vector, a model's delivered vector).
impl PartialEq<u8> for Vector {
    fn eq(&self, other: &u8) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Vector> for u8 {
    fn eq(&self, other: &Vector) -> bool {
        *self == other.0
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

impl fmt::LowerHex for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// A local APIC id. Any 32-bit value is an x2APIC id; xAPIC mode can only
/// address ids up to 255 (checked where a destination is encoded:
/// [`LapicError::DestinationOutOfRange`](crate::LapicError::DestinationOutOfRange),
/// [`MsiError::DestinationOutOfRange`](crate::MsiError)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ApicId(pub u32);

impl ApicId {
    /// The raw id.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ApicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "APIC {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_vectors_are_refused() {
        for v in 0..32u8 {
            assert_eq!(Vector::new(v), Err(ExceptionVector(v)));
        }
        assert_eq!(Vector::new(32).map(Vector::get), Ok(32));
        assert_eq!(Vector::new(255).map(Vector::get), Ok(255));
        assert_eq!(Vector::all().count(), 224);
        const TIMER: Vector = Vector::of::<0xEC>();
        assert_eq!(TIMER.get(), 0xEC);
    }
}
