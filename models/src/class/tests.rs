use super::*;

fn check(role: Role, confort_famille: bool, may_download: bool) {
    let options = ClassOptions { confort_famille, ..Default::default() };
    assert_eq!(options.may_download_media(role), may_download, "{role} confort_famille={confort_famille}");
}

#[test]
fn parents_download_only_with_confort_famille() {
    check(Role::Teacher, false, true);
    check(Role::Admin, false, true);
    check(Role::Parent, false, false);
    check(Role::Teacher, true, true);
    check(Role::Parent, true, true);
}

#[test]
fn roles_round_trip() {
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert!("child".parse::<Role>().is_err());
}
