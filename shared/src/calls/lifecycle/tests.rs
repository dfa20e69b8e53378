use super::*;

fn query(pairs: &[(&str, &str)]) -> ListQuery {
    let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let uri: http::Uri = format!("/api/v1/machines?{}", text.join("&")).parse().unwrap();
    axum::extract::Query::<ListQuery>::try_from_uri(&uri).unwrap().0
}

#[test]
fn a_listing_query_becomes_the_stores_filter_or_a_400_naming_the_parameter() {
    let (filter, after, limit) = query(&[("requestId", "req-1"), ("state", "stopped"), ("limit", "7"), ("nextToken", "i-0abc")])
        .parse("awsinst")
        .unwrap();
    let expected = MachineFilter {
        provider: "awsinst".into(),
        request_id: Some("req-1".into()),
        template_id: None,
        state: Some(InstanceState::Stopped),
    };
    assert_eq!((filter, after.as_deref(), limit), (expected, Some("i-0abc"), 7));
    assert_eq!(query(&[]).parse("awsinst").unwrap().2, DEFAULT_PAGE);
    let bad = [
        (vec![("limit", "0")], "limit: must be between 1 and 500, got 0"),
        (vec![("limit", "501")], "limit: must be between 1 and 500, got 501"),
        (vec![("state", "asleep")], "state: 'asleep' is not an EC2 state"),
        (vec![("templateId", "%20")], "templateId: must not be empty"),
        (vec![("nextToken", "x%20y")], "nextToken: is not a token this API gave"),
    ];
    for (pairs, message) in bad {
        let err = query(&pairs).parse("awsinst").unwrap_err();
        assert_eq!(err.status(), 400, "{pairs:?}");
        assert!(err.to_string().starts_with(message), "{pairs:?}: {err}");
    }
}

#[test]
fn a_view_shows_the_lifecycle_state_and_its_actions() {
    let mut machine: MachineRecord = serde_json::from_value(serde_json::json!({
        "machineId": "i-1", "provider": "awsinst", "privateIpAddress": "", "publicIpAddress": "",
        "state": "stopped", "result": "succeed", "launchtime": 1, "lifecycle": "ondemand",
        "message": "", "version": 1, "updatedAt": 1
    }))
    .unwrap();
    machine.record_action(Action::Pause, "arn:aws:iam::1:user/ops", 5);
    let view = serde_json::to_value(MachineView::of(machine)).unwrap();
    assert_eq!(view["machineState"], "PAUSED");
    assert_eq!(view["allowedActions"], serde_json::json!(["resume", "stop", "terminate"]));
    assert_eq!(view["actions"], serde_json::json!([{"action": "pause", "at": 5, "by": "arn:aws:iam::1:user/ops"}]));
}
