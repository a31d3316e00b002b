use super::*;

fn check(text: &str, expected: &str) {
    let config = parse(text).unwrap();
    assert_eq!(describe(&config), expected, "{text}");
    assert_eq!(parse(&describe(&config)).unwrap(), config, "round trip of {text}");
}

#[test]
fn parses_and_describes() {
    check("", "");
    check("delay=150,loss=8", "delay=150,loss=8");
    check(" delay = 150 , jitter=10, reorder ", "delay=150,jitter=10,reorder=1");
    check("rate=600", "rate=600,limit-ms=100");
    check("rate=600,limit-ms=80", "rate=600,limit-ms=80");
    check("rate=600,limit-bytes=6000", "rate=600,limit-bytes=6000");
    check("burst=1/30", "burst=1/30/100/0");
    check("burst=1/30/50/0.5", "burst=1/30/50/0.5");
}

#[test]
fn refuses_nonsense() {
    for bad in ["delay=-1", "loss=101", "loss=x", "rate=0", "burst=1", "speed=3", "delay=inf"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}
