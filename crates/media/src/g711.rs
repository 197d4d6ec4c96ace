//! G.711 μ-law (PCMU) and A-law (PCMA), per ITU-T G.711.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// 16-bit linear PCM to μ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (31 - (s as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 as i32 | mantissa) as u8
}

/// μ-law to 16-bit linear PCM.
pub fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// 16-bit linear PCM to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let s = sample as i32 >> 3; // 13-bit
    let (sign, mag) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let mag = mag.min(0x0fff);
    let code = if mag < 32 {
        mag >> 1
    } else {
        let exponent = 31 - (mag as u32).leading_zeros() as i32 - 4; // 1..=7
        (exponent << 4) | ((mag >> exponent) & 0x0f)
    };
    ((sign | code) ^ 0x55) as u8
}

/// A-law to 16-bit linear PCM.
pub fn alaw_decode(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let exponent = (a >> 4) & 0x07;
    let mantissa = a & 0x0f;
    let mag = if exponent == 0 { (mantissa << 4) + 8 } else { ((mantissa << 4) + 0x108) << (exponent - 1) };
    (if a & 0x80 != 0 { mag } else { -mag }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ulaw_code_round_trips() {
        for c in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(c));
            // 0x7f and 0xff both mean zero.
            assert!(back == c || (ulaw_decode(c) == 0 && ulaw_decode(back) == 0), "{c:#x} -> {back:#x}");
        }
    }

    #[test]
    fn every_alaw_code_round_trips() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "{c:#x}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(-1), 0x7f);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
    }

    #[test]
    fn every_sample_encodes_to_its_nearest_level() {
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(s)) as i32;
            let a = alaw_decode(alaw_encode(s)) as i32;
            let err_u = (u - s as i32).abs();
            let err_a = (a - s as i32).abs();
            // Quantisation error is bounded by half the step of the segment.
            assert!(err_u <= (s as i32).abs() / 16 + 16 || (s as i32).abs() > CLIP, "ulaw {s} -> {u}");
            assert!(err_a <= (s as i32).abs() / 16 + 16, "alaw {s} -> {a}");
        }
    }
}
