-- revision: 0004
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
--
CREATE TABLE api_keys (
	id INTEGER NOT NULL, 
	name VARCHAR(120) NOT NULL, 
	role VARCHAR(32) NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	revoked_at DATETIME, last_used_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (key_hash), 
	UNIQUE (name)
);
--
CREATE TABLE audit_events (
	seq INTEGER NOT NULL, 
	at VARCHAR(32) NOT NULL, 
	actor VARCHAR(120) NOT NULL, 
	role VARCHAR(32) NOT NULL, 
	action VARCHAR(64) NOT NULL, 
	object VARCHAR(200) NOT NULL, 
	result VARCHAR(32) NOT NULL, 
	detail JSON NOT NULL, 
	prev_hash VARCHAR(64) NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (seq)
);
--
CREATE INDEX ix_audit_events_action ON audit_events (action);
--
CREATE TABLE banks (
	id INTEGER NOT NULL, 
	name VARCHAR(120) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	policy JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
--
CREATE TABLE cases (
	id INTEGER NOT NULL, 
	ref VARCHAR(20) NOT NULL, 
	title VARCHAR(120) NOT NULL, 
	owner VARCHAR(125) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (ref), 
	UNIQUE (title)
);
--
CREATE INDEX ix_cases_owner ON cases (owner);
--
CREATE TABLE index_revisions (
	bank_id INTEGER NOT NULL, 
	signal VARCHAR(64) NOT NULL, 
	revision INTEGER NOT NULL, 
	PRIMARY KEY (bank_id, signal)
);
--
CREATE TABLE privacy_ledger (
	id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	actor VARCHAR(120) NOT NULL, 
	epsilon FLOAT NOT NULL, 
	spent_after FLOAT NOT NULL, 
	budget FLOAT NOT NULL, 
	params JSON NOT NULL, 
	epsilons JSON NOT NULL, 
	tables JSON NOT NULL, 
	library VARCHAR(60) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (seq)
);
--
CREATE TABLE team_members (
	id INTEGER NOT NULL, 
	team VARCHAR(120) NOT NULL, 
	member VARCHAR(120) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (team, member)
);
--
CREATE INDEX ix_team_members_team ON team_members (team);
--
CREATE INDEX ix_team_members_member ON team_members (member);
--
CREATE TABLE webhook_subscribers (
	id INTEGER NOT NULL, 
	owner VARCHAR(130) NOT NULL, 
	url VARCHAR(2000) NOT NULL, 
	secret BLOB NOT NULL, 
	active BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
--
CREATE INDEX ix_webhook_subscribers_owner ON webhook_subscribers (owner);
--
CREATE TABLE subjects (
	id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	label VARCHAR(300) NOT NULL, 
	pseudonym VARCHAR(40) NOT NULL, 
	attributes JSON NOT NULL, 
	personal BLOB, 
	consent_expires DATETIME, 
	protected_until DATE, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(bank_id) REFERENCES banks (id) ON DELETE CASCADE, 
	UNIQUE (bank_id, label), 
	UNIQUE (pseudonym)
);
--
CREATE INDEX ix_subjects_bank_id ON subjects (bank_id);
--
CREATE TABLE web_sessions (
	token_hash VARCHAR(64) NOT NULL, 
	key_id INTEGER NOT NULL, 
	csrf VARCHAR(64) NOT NULL, 
	revealed JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (token_hash), 
	FOREIGN KEY(key_id) REFERENCES api_keys (id) ON DELETE CASCADE
);
--
CREATE INDEX ix_web_sessions_key_id ON web_sessions (key_id);
--
CREATE TABLE ad_contacts (
	id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	subject_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	value VARCHAR(320) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(subject_id) REFERENCES subjects (id) ON DELETE CASCADE, 
	UNIQUE (subject_id, kind, value)
);
--
CREATE INDEX ix_ad_contacts_lookup ON ad_contacts (bank_id, kind, value);
--
CREATE INDEX ix_ad_contacts_subject_id ON ad_contacts (subject_id);
--
CREATE TABLE ad_links (
	id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	a INTEGER NOT NULL, 
	b INTEGER NOT NULL, 
	kind VARCHAR(24) NOT NULL, 
	strength FLOAT NOT NULL, 
	evidence JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(a) REFERENCES subjects (id) ON DELETE CASCADE, 
	FOREIGN KEY(b) REFERENCES subjects (id) ON DELETE CASCADE, 
	UNIQUE (bank_id, a, b, kind)
);
--
CREATE INDEX ix_ad_links_a ON ad_links (a);
--
CREATE INDEX ix_ad_links_bank_id ON ad_links (bank_id);
--
CREATE INDEX ix_ad_links_b ON ad_links (b);
--
CREATE TABLE case_subjects (
	id INTEGER NOT NULL, 
	case_id INTEGER NOT NULL, 
	subject_id INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(case_id) REFERENCES cases (id) ON DELETE CASCADE, 
	FOREIGN KEY(subject_id) REFERENCES subjects (id) ON DELETE CASCADE, 
	UNIQUE (subject_id)
);
--
CREATE INDEX ix_case_subjects_case_id ON case_subjects (case_id);
--
CREATE TABLE items (
	id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	subject_id INTEGER, 
	sha256 VARCHAR(64) NOT NULL, 
	source VARCHAR(2000) NOT NULL, 
	width INTEGER NOT NULL, 
	height INTEGER NOT NULL, 
	format VARCHAR(16) NOT NULL, 
	attributes JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(bank_id) REFERENCES banks (id) ON DELETE CASCADE, 
	FOREIGN KEY(subject_id) REFERENCES subjects (id) ON DELETE CASCADE, 
	UNIQUE (bank_id, sha256)
);
--
CREATE INDEX ix_items_bank_id ON items (bank_id);
--
CREATE INDEX ix_items_sha256 ON items (sha256);
--
CREATE INDEX ix_items_subject_id ON items (subject_id);
--
CREATE TABLE ad_item_links (
	id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	a INTEGER NOT NULL, 
	b INTEGER NOT NULL, 
	distance INTEGER NOT NULL, 
	witnesses INTEGER NOT NULL, 
	template BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(a) REFERENCES items (id) ON DELETE CASCADE, 
	FOREIGN KEY(b) REFERENCES items (id) ON DELETE CASCADE, 
	UNIQUE (a, b)
);
--
CREATE INDEX ix_ad_item_links_b ON ad_item_links (b);
--
CREATE INDEX ix_ad_item_links_bank_id ON ad_item_links (bank_id);
--
CREATE INDEX ix_ad_item_links_a ON ad_item_links (a);
--
CREATE TABLE ad_linked_items (
	item_id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	linked_at DATETIME NOT NULL, 
	PRIMARY KEY (item_id), 
	FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE
);
--
CREATE INDEX ix_ad_linked_items_bank_id ON ad_linked_items (bank_id);
--
CREATE TABLE ad_photos (
	id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	subject_id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	attributes JSON NOT NULL, 
	linked BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE, 
	FOREIGN KEY(subject_id) REFERENCES subjects (id) ON DELETE CASCADE, 
	UNIQUE (subject_id, item_id)
);
--
CREATE INDEX ix_ad_photos_bank_id ON ad_photos (bank_id);
--
CREATE INDEX ix_ad_photos_subject_id ON ad_photos (subject_id);
--
CREATE INDEX ix_ad_photos_item_id ON ad_photos (item_id);
--
CREATE INDEX ix_ad_photos_linked ON ad_photos (linked);
--
CREATE TABLE ad_prints (
	item_id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	pdq BLOB NOT NULL, 
	quality FLOAT, 
	thumb BLOB, 
	trim_pdq BLOB, 
	trim_quality FLOAT, 
	trim_thumb BLOB, 
	variants BLOB, 
	trim_variants BLOB, 
	PRIMARY KEY (item_id), 
	FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE
);
--
CREATE INDEX ix_ad_prints_bank_id ON ad_prints (bank_id);
--
CREATE TABLE candidates (
	id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	subject_id INTEGER, 
	ref_item_id INTEGER NOT NULL, 
	query_sha256 VARCHAR(64) NOT NULL, 
	query_photo VARCHAR(64), 
	score FLOAT NOT NULL, 
	tier VARCHAR(16) NOT NULL, 
	evidence JSON NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	required_reviews INTEGER NOT NULL, 
	created_by VARCHAR(120) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	version INTEGER DEFAULT 0 NOT NULL, 
	minor_policy BOOLEAN DEFAULT 0 NOT NULL, 
	context JSON, 
	PRIMARY KEY (id), 
	FOREIGN KEY(bank_id) REFERENCES banks (id) ON DELETE CASCADE, 
	FOREIGN KEY(ref_item_id) REFERENCES items (id) ON DELETE CASCADE, 
	FOREIGN KEY(subject_id) REFERENCES subjects (id) ON DELETE CASCADE, 
	UNIQUE (query_sha256, bank_id, subject_id)
);
--
CREATE INDEX ix_candidates_subject_id ON candidates (subject_id);
--
CREATE INDEX ix_candidates_state ON candidates (state);
--
CREATE INDEX ix_candidates_query_sha256 ON candidates (query_sha256);
--
CREATE INDEX ix_candidates_tier ON candidates (tier);
--
CREATE INDEX ix_candidates_ref_item_id ON candidates (ref_item_id);
--
CREATE INDEX ix_candidates_bank_id ON candidates (bank_id);
--
CREATE TABLE image_texts (
	id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	annotator VARCHAR(32) NOT NULL, 
	text VARCHAR(500) NOT NULL, 
	confidence FLOAT NOT NULL, 
	"left" INTEGER NOT NULL, 
	top INTEGER NOT NULL, 
	"right" INTEGER NOT NULL, 
	bottom INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE
);
--
CREATE INDEX ix_image_texts_item_id ON image_texts (item_id);
--
CREATE INDEX ix_image_texts_bank_id ON image_texts (bank_id);
--
CREATE TABLE vectors (
	id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	signal VARCHAR(64) NOT NULL, 
	data BLOB NOT NULL, 
	quality FLOAT, 
	box JSON, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE
);
--
CREATE INDEX ix_vectors_item_id ON vectors (item_id);
--
CREATE INDEX ix_vectors_bank_id ON vectors (bank_id);
--
CREATE TABLE watch_checks (
	id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	watcher_bank_id INTEGER NOT NULL, 
	upto_item_id INTEGER NOT NULL, 
	result VARCHAR(16) NOT NULL, 
	checked_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE, 
	FOREIGN KEY(watcher_bank_id) REFERENCES banks (id) ON DELETE CASCADE, 
	UNIQUE (item_id, watcher_bank_id)
);
--
CREATE INDEX ix_watch_checks_watcher_bank_id ON watch_checks (watcher_bank_id);
--
CREATE INDEX ix_watch_checks_item_id ON watch_checks (item_id);
--
CREATE TABLE alerts (
	id INTEGER NOT NULL, 
	event_id VARCHAR(40) NOT NULL, 
	candidate_id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	case_id INTEGER, 
	owner VARCHAR(130), 
	confirmed_at DATETIME NOT NULL, 
	acked_at DATETIME, 
	acked_by VARCHAR(120), 
	outcome VARCHAR(32), 
	outcome_at DATETIME, 
	outcome_by VARCHAR(120), 
	PRIMARY KEY (id), 
	FOREIGN KEY(bank_id) REFERENCES banks (id) ON DELETE CASCADE, 
	FOREIGN KEY(candidate_id) REFERENCES candidates (id) ON DELETE CASCADE, 
	FOREIGN KEY(case_id) REFERENCES cases (id) ON DELETE SET NULL, 
	UNIQUE (candidate_id), 
	UNIQUE (event_id)
);
--
CREATE INDEX ix_alerts_owner ON alerts (owner);
--
CREATE INDEX ix_alerts_bank_id ON alerts (bank_id);
--
CREATE TABLE candidate_requesters (
	id INTEGER NOT NULL, 
	candidate_id INTEGER NOT NULL, 
	requester VARCHAR(120) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(candidate_id) REFERENCES candidates (id) ON DELETE CASCADE, 
	UNIQUE (candidate_id, requester)
);
--
CREATE INDEX ix_candidate_requesters_candidate_id ON candidate_requesters (candidate_id);
--
CREATE TABLE photo_contacts (
	id INTEGER NOT NULL, 
	bank_id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	text_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	value VARCHAR(320) NOT NULL, 
	confidence FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE, 
	FOREIGN KEY(text_id) REFERENCES image_texts (id) ON DELETE CASCADE
);
--
CREATE INDEX ix_photo_contacts_lookup ON photo_contacts (bank_id, kind, value);
--
CREATE INDEX ix_photo_contacts_item_id ON photo_contacts (item_id);
--
CREATE TABLE review_decisions (
	id INTEGER NOT NULL, 
	candidate_id INTEGER NOT NULL, 
	reviewer VARCHAR(120) NOT NULL, 
	role VARCHAR(32) NOT NULL, 
	action VARCHAR(16) NOT NULL, 
	state_after VARCHAR(16) NOT NULL, 
	note BLOB NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(candidate_id) REFERENCES candidates (id) ON DELETE CASCADE
);
--
CREATE INDEX ix_review_decisions_candidate_id ON review_decisions (candidate_id);
--
CREATE TABLE scene_features (
	vector_id INTEGER NOT NULL, 
	data BLOB NOT NULL, 
	PRIMARY KEY (vector_id), 
	FOREIGN KEY(vector_id) REFERENCES vectors (id) ON DELETE CASCADE
);
--
CREATE TABLE alert_deliveries (
	id INTEGER NOT NULL, 
	alert_id INTEGER NOT NULL, 
	subscriber_id INTEGER NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	claimed_until DATETIME, 
	delivered_at DATETIME, 
	last_status INTEGER, 
	last_error VARCHAR(300), 
	PRIMARY KEY (id), 
	FOREIGN KEY(alert_id) REFERENCES alerts (id) ON DELETE CASCADE, 
	FOREIGN KEY(subscriber_id) REFERENCES webhook_subscribers (id) ON DELETE CASCADE, 
	UNIQUE (alert_id, subscriber_id)
);
--
CREATE INDEX ix_alert_deliveries_alert_id ON alert_deliveries (alert_id);
--
CREATE INDEX ix_alert_deliveries_next_attempt_at ON alert_deliveries (next_attempt_at);
--
CREATE INDEX ix_alert_deliveries_state ON alert_deliveries (state);
--
CREATE TABLE catalog_meta (
	name VARCHAR(64) NOT NULL, 
	value VARCHAR(200) NOT NULL, 
	PRIMARY KEY (name)
);
--
CREATE TABLE candidate_reveals (
	id INTEGER NOT NULL, 
	candidate_id INTEGER NOT NULL, 
	reviewer VARCHAR(120) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(candidate_id) REFERENCES candidates (id) ON DELETE CASCADE, 
	UNIQUE (candidate_id, reviewer)
);
--
CREATE INDEX ix_candidate_reveals_candidate_id ON candidate_reveals (candidate_id);
--
